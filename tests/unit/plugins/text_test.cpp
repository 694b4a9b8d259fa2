// UTF-8 decoding, Unicode lower-casing, tokenisers and the sentence splitter
// used by the built-in evaluators.

#include "plugins/builtin/text.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace arbiter::plugins::builtin {
namespace {

using Strings = std::vector<std::string>;
using Views = std::vector<std::string_view>;

// ---------------------------------------------------------------------------
// UTF-8

TEST(Utf8, RoundTripsEveryEncodingLength) {
  const std::string text = "a\u00E9\u20AC\U0001F600";  // 1, 2, 3 and 4 bytes
  const std::u32string decoded = decode_utf8(text);
  EXPECT_EQ(decoded, (std::u32string{U'a', U'\u00E9', U'\u20AC', U'\U0001F600'}));
  EXPECT_EQ(encode_utf8(decoded), text);
  EXPECT_TRUE(decode_utf8("").empty());
}

TEST(Utf8, IllFormedBytesBecomeReplacementCharacters) {
  const std::u32string r(1, kReplacementChar);
  EXPECT_EQ(decode_utf8("\xFF"), r);                          // never valid
  EXPECT_EQ(decode_utf8("\xC0\xAF"), r + r);                  // overlong lead
  EXPECT_EQ(decode_utf8("\xE0\x80\xAF"), r + r + r);          // overlong 3-byte
  EXPECT_EQ(decode_utf8("\xED\xA0\x80"), r + r + r);          // surrogate
  EXPECT_EQ(decode_utf8("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  // A truncated sequence is one replacement, and the next character survives.
  EXPECT_EQ(decode_utf8("\xE2\x82"
                        "a"),
            r + U"a");
  EXPECT_EQ(decode_utf8("ab\xE2\x82"), U"ab" + r);
  // Lone continuation bytes.
  EXPECT_EQ(decode_utf8("\x80\x80"), r + r);
}

TEST(Utf8, EncodesInvalidCodePointsAsReplacement) {
  EXPECT_EQ(encode_utf8(std::u32string{static_cast<char32_t>(0xD800)}), "\uFFFD");
  EXPECT_EQ(encode_utf8(std::u32string{static_cast<char32_t>(0x110000)}), "\uFFFD");
}

// ---------------------------------------------------------------------------
// Lower-casing

TEST(ToLower, Ascii) {
  EXPECT_EQ(to_lower(std::string_view("Hello, WORLD 42_Z")), "hello, world 42_z");
  EXPECT_EQ(to_lower(std::string_view("")), "");
}

TEST(ToLower, Latin1Supplement) {
  EXPECT_EQ(to_lower(std::string_view("ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞ")),
            "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþ");
  // × and ÷ are not letters; ß, µ and ÿ are already lower case.
  EXPECT_EQ(to_lower(std::string_view("×÷ßµÿ")), "×÷ßµÿ");
}

TEST(ToLower, LatinExtendedA) {
  EXPECT_EQ(to_lower(std::string_view("ĀĂĄĆČĎĐĒĘĚĞĢĪĮĶĹĻĽŁŃŅŇŊŌŐŒŔŘŚŞŠŢŤŦŪŮŰŲŴŶŸŹŻŽ")),
            "āăąćčďđēęěğģīįķĺļľłńņňŋōőœŕřśşšţťŧūůűųŵŷÿźżž");
  // Already lower case or caseless in this block.
  EXPECT_EQ(to_lower(std::string_view("ıĸŉſ")), "ıĸŉſ");
  // Full mapping of dotted capital I: "i" + U+0307, as Python and ICU do.
  EXPECT_EQ(to_lower(std::string_view("İ")), "i\u0307");
}

TEST(ToLower, LatinBeyondTheRequiredBlocks) {
  EXPECT_EQ(to_lower(std::string_view("ǄǅƁȺẞỲ")), "ǆǆɓⱥßỳ");
}

TEST(ToLower, Greek) {
  EXPECT_EQ(to_lower(std::string_view("ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΤΥΦΧΨΩ")), "αβγδεζηθικλμνξοπρτυφχψω");
  EXPECT_EQ(to_lower(std::string_view("ΆΈΉΊΌΎΏΪΫ")), "άέήίόύώϊϋ");
  // Final sigma at the end of a word, medial sigma elsewhere, and a lone Σ
  // (not after a letter) stays medial.
  EXPECT_EQ(to_lower(std::string_view("ΟΔΟΣ ΣΟΦΟΣ. Σ")), "οδος σοφος. σ");
  EXPECT_EQ(to_lower(std::string_view("ΣΑΣ,")), "σας,");
  // The context skips case-ignorable characters such as '.' and apostrophes.
  EXPECT_EQ(to_lower(std::string_view("Α.Σ.")), "α.ς.");
  EXPECT_EQ(to_lower(std::string_view("ΑΣ'Β")), "ασ'β");
}

TEST(ToLower, Cyrillic) {
  EXPECT_EQ(to_lower(std::string_view("АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ")),
            "абвгдежзийклмнопрстуфхцчшщъыьэюя");
  EXPECT_EQ(to_lower(std::string_view("ЀЁЂЃЄЅІЇЈЉЊЋЌЍЎЏ")), "ѐёђѓєѕіїјљњћќѝўџ");
  EXPECT_EQ(to_lower(std::string_view("ѢѲҐӀӁӐ")), "ѣѳґӏӂӑ");
}

TEST(ToLower, OtherScriptsAndSymbols) {
  EXPECT_EQ(to_lower(std::string_view("ԱՐԵՎ ＡＢＣ Ⅻ")), "արեվ ａｂｃ ⅻ");
  EXPECT_EQ(to_lower(std::string_view("漢字 ひらがな 123 😀")), "漢字 ひらがな 123 😀");
}

TEST(ToLower, TokenListOverload) {
  EXPECT_EQ(to_lower(Strings{"ABC", "Été"}), (Strings{"abc", "été"}));
}

// ---------------------------------------------------------------------------
// Character classes

TEST(CharClasses, WordCharacters) {
  for (const char32_t c :
       {U'a', U'Z', U'0', U'_', U'é', U'ß', U'Ω', U'ж', U'漢', U'ひ', U'²', U'\U00020000'}) {
    EXPECT_TRUE(is_word_char(c)) << static_cast<unsigned>(c);
  }
  for (const char32_t c :
       {U' ', U'-', U'.', U'\'', U'\u0301' /* combining acute */, U'\u00A0', U'€', U'😀'}) {
    EXPECT_FALSE(is_word_char(c)) << static_cast<unsigned>(c);
  }
}

TEST(CharClasses, Whitespace) {
  for (const char32_t c : {U' ', U'\t', U'\n', U'\r', U'\v', U'\f', U'\x1C', U'\u0085', U'\u00A0',
                           U'\u2003', U'\u3000'}) {
    EXPECT_TRUE(is_space(c)) << static_cast<unsigned>(c);
  }
  for (const char32_t c : {U'a', U'\u200B' /* zero-width space is not space */, U'_'}) {
    EXPECT_FALSE(is_space(c)) << static_cast<unsigned>(c);
  }
}

// ---------------------------------------------------------------------------
// Tokenisers

TEST(WordTokens, SplitsOnNonWordCharacters) {
  EXPECT_EQ(word_tokens("Dr. Smith arrived at 5 p.m."),
            (Strings{"Dr", "Smith", "arrived", "at", "5", "p", "m"}));
  EXPECT_EQ(word_tokens("snake_case and don't"), (Strings{"snake_case", "and", "don", "t"}));
  EXPECT_TRUE(word_tokens("").empty());
  EXPECT_TRUE(word_tokens(" ... !? ").empty());
}

TEST(WordTokens, Unicode) {
  EXPECT_EQ(word_tokens("Ünïcödé façade, naïve café!"),
            (Strings{"Ünïcödé", "façade", "naïve", "café"}));
  EXPECT_EQ(word_tokens("Привет, мир — Γειά σου"), (Strings{"Привет", "мир", "Γειά", "σου"}));
  EXPECT_EQ(word_tokens("漢字とかな"), (Strings{"漢字とかな"}));
  // A combining mark is not a word character (as in Python), so decomposed
  // text splits at it; "İ" stays whole because tokens are lower-cased after
  // tokenising.
  EXPECT_EQ(word_tokens("cafe\u0301 x"), (Strings{"cafe", "x"}));
  EXPECT_EQ(to_lower(word_tokens("İstanbul")), (Strings{"i\u0307stanbul"}));
}

TEST(WhitespaceTokens, SplitsOnUnicodeWhitespace) {
  EXPECT_EQ(whitespace_tokens("  The capital,\tof\nFrance.  "),
            (Strings{"The", "capital,", "of", "France."}));
  EXPECT_EQ(whitespace_tokens("a\u00A0b\u3000c"), (Strings{"a", "b", "c"}));
  EXPECT_TRUE(whitespace_tokens("").empty());
  EXPECT_TRUE(whitespace_tokens(" \n\t ").empty());
}

// ---------------------------------------------------------------------------
// Sentences

TEST(SplitSentences, TerminalPunctuationFollowedBySpace) {
  EXPECT_EQ(split_sentences("The cat sat. It was happy! Was it? Yes"),
            (Views{"The cat sat.", "It was happy!", "Was it?", "Yes"}));
  EXPECT_EQ(split_sentences("Wait... what?! Ok."), (Views{"Wait...", "what?!", "Ok."}));
}

TEST(SplitSentences, PunctuationInsideTokensDoesNotSplit) {
  EXPECT_EQ(split_sentences("Pi is 3.14 and e.g.x stays."), (Views{"Pi is 3.14 and e.g.x stays."}));
}

TEST(SplitSentences, ClosingQuotesStayWithTheirSentence) {
  EXPECT_EQ(split_sentences("He said \"hi.\" Then left. (Really.) Done"),
            (Views{"He said \"hi.\"", "Then left.", "(Really.)", "Done"}));
}

TEST(SplitSentences, LineBreaksAndCjkTerminators) {
  EXPECT_EQ(split_sentences("- first item\n- second item\r\n\n# Title"),
            (Views{"- first item", "- second item", "# Title"}));
  EXPECT_EQ(split_sentences("今日は晴れ。明日は雨！本当？"),
            (Views{"今日は晴れ。", "明日は雨！", "本当？"}));
}

TEST(SplitSentences, AbbreviationsAreNotSpecialCased) {
  EXPECT_EQ(split_sentences("Dr. Smith came at 5 p.m. He left."),
            (Views{"Dr.", "Smith came at 5 p.m.", "He left."}));
}

TEST(SplitSentences, EmptyAndBlank) {
  EXPECT_TRUE(split_sentences("").empty());
  EXPECT_TRUE(split_sentences(" \n \u00A0 ").empty());
  EXPECT_EQ(split_sentences("  lone  "), (Views{"lone"}));
  EXPECT_EQ(split_sentences(". . ."), (Views{".", ".", "."}));
}

}  // namespace
}  // namespace arbiter::plugins::builtin
