#pragma once
// UTF-8 text helpers for the built-in evaluators: decoding, Unicode
// lower-casing, and the tokenisers and sentence splitter the reference
// templates use (../shared/reference/evaluators.json).
//
// Unicode coverage (no ICU dependency):
//  - Lower-casing is Unicode 14.0 default full lower-casing for every code
//    point (the same table Python 3.11's str.lower() uses): simple mappings for
//    all scripts, U+0130 'İ' -> "i̇" (i + U+0307), and Greek final sigma
//    (Σ -> ς at the end of a word; text.cpp documents the one simplification
//    of Unicode's Final_Sigma context).
//  - A word character is what Python 3.11's `\w` matches on str: Unicode
//    letters (Lu Ll Lt Lm Lo), numbers that str.isalnum() accepts (Nd, Nl, No
//    and ideographic numerals) and '_'. Combining marks are NOT word characters,
//    as in Python.
//  - Whitespace is Python's str.isspace() set (ASCII space and \t\n\v\f\r,
//    U+001C..U+001F, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029,
//    U+202F, U+205F, U+3000).
//
// Invalid UTF-8 never throws: each maximal ill-formed subsequence decodes to
// U+FFFD, so a score is still computed for a malformed response.
//
// Thread-safety: every function is pure (reads only constant tables) and may be
// called concurrently. Returned views point into the caller's string.

#include <string>
#include <string_view>
#include <vector>

namespace arbiter::plugins::builtin {

inline constexpr char32_t kReplacementChar = U'\uFFFD';

// Code points of `text`; ill-formed sequences become U+FFFD.
std::u32string decode_utf8(std::string_view text);
std::string encode_utf8(std::u32string_view text);
// Appends one code point as UTF-8 (a surrogate or a value past U+10FFFF as U+FFFD).
void append_utf8(std::string& out, char32_t c);

// Unicode full lower-casing (see the file comment). The result may be longer
// than the input (U+0130).
std::u32string to_lower(std::u32string_view text);
std::string to_lower(std::string_view utf8);

// Python `\w` for one code point.
bool is_word_char(char32_t c);
// Python str.isspace() for one code point.
bool is_space(char32_t c);

// Maximal runs of `\w` characters, as UTF-8, in original case (callers lower-
// case the tokens, not the text: lower-casing first would split "İstanbul" at
// the combining dot U+0307 that 'İ' lower-cases to).
std::vector<std::string> word_tokens(std::string_view text);

// Maximal runs of non-whitespace, as UTF-8 (Python's str.split()).
std::vector<std::string> whitespace_tokens(std::string_view text);

// Each string lower-cased with to_lower.
std::vector<std::string> to_lower(std::vector<std::string> tokens);

// Splits text into sentences. A sentence ends
//  - after a run of '.', '!' or '?' (optionally followed by closing quotes or
//    brackets: " ' ) ] } » ” ’) when whitespace or the end of text follows,
//  - after the ideographic full stop U+3002 and the fullwidth U+FF01 / U+FF1F,
//  - at a line break (\n, \r, U+0085, U+2028, U+2029), since model output uses
//    lines for list items and headings, which are not joined by punctuation.
// Pieces are trimmed of whitespace; empty pieces are dropped. Abbreviations are
// not special-cased ("Dr. Smith" is two pieces): an abbreviation list would be
// English-only and guesswork, and the reference vectors (which contain
// "Dr. Smith ... 5 p.m. He") score the same either way.
std::vector<std::string_view> split_sentences(std::string_view text);

}  // namespace arbiter::plugins::builtin
