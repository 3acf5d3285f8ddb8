//! Mutated seed documents for the property tests ("an error or a value, never a panic"):
//! a real input with a few byte-level and YAML-minded edits, so the cases stay close enough
//! to valid to reach deep into a parser. Shared by `#[path]` with the agent's and the
//! phases' property tests, which mutate manifests and image archives the same way.

#![allow(dead_code)] // each test crate uses part of it

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

/// The property tests' settings: `cases` per property; failures are not written to
/// `proptest-regressions/` files (a found panic becomes a named regression test instead).
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Tokens that change what a YAML or JSON document means, and extreme values.
pub const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "  ",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "!!int ",
    "!!str ",
    "---\n",
    "...\n",
    "|\n",
    ">-\n",
    "? ",
    "~",
    "null",
    "true",
    "0",
    "-0",
    "-1",
    "0x7fffffffffffffff",
    "1e999",
    "-1e999",
    ".nan",
    ".inf",
    "2147483647",
    "2147483648",
    "-2147483649",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999",
    "100000000h",
    "2562047h47m16.854775808s",
    "-1h",
    "1.5",
    "0.0.0.0",
    "::",
    "::ffff:10.0.0.1",
    "10.0.0.0/0",
    "10.0.0.0/33",
    "fd00::/129",
    "/",
    "..",
    "\u{0}",
    "\u{feff}",
    "\u{85}",
    "é",
    "v1.20.2",
    "v4294967295.4294967296.0",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    Token(Index, &'static str),
    Byte(Index, u8),
    DuplicateLine(Index),
    DropLine(Index),
    ReplaceValue(Index, &'static str),
}

fn at(i: &Index, len: usize) -> usize {
    if len == 0 { 0 } else { i.index(len + 1) }
}

fn lines(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < bytes.len() {
        out.push((start, bytes.len()));
    }
    out
}

fn apply(mut doc: Vec<u8>, edit: &Edit) -> Vec<u8> {
    match edit {
        Edit::Delete(i, n) => {
            let from = at(i, doc.len()).min(doc.len());
            let to = (from + n).min(doc.len());
            doc.drain(from..to);
        }
        Edit::Insert(i, bytes) => {
            let p = at(i, doc.len());
            doc.splice(p..p, bytes.iter().copied());
        }
        Edit::Token(i, t) => {
            let p = at(i, doc.len());
            doc.splice(p..p, t.bytes());
        }
        Edit::Byte(i, b) => {
            if !doc.is_empty() {
                let p = i.index(doc.len());
                doc[p] = *b;
            }
        }
        Edit::DuplicateLine(i) | Edit::DropLine(i) => {
            let ls = lines(&doc);
            if !ls.is_empty() {
                let (s, e) = ls[i.index(ls.len())];
                if matches!(edit, Edit::DropLine(_)) {
                    doc.drain(s..e);
                } else {
                    let line = doc[s..e].to_vec();
                    doc.splice(e..e, line);
                }
            }
        }
        Edit::ReplaceValue(i, t) => {
            let values: Vec<usize> = doc
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w == b": ")
                .map(|(p, _)| p + 2)
                .collect();
            if !values.is_empty() {
                let s = values[i.index(values.len())];
                let e = doc[s..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(doc.len(), |n| s + n);
                doc.splice(s..e, t.bytes());
            }
        }
    }
    doc
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 1..48usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Token(i, t)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        any::<Index>().prop_map(Edit::DuplicateLine),
        any::<Index>().prop_map(Edit::DropLine),
        (any::<Index>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::ReplaceValue(i, t)),
    ]
}

/// One of `seeds` with one to six edits.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit(), 1..7),
    )
        .prop_map(|(seed, edits)| edits.iter().fold(seed, apply))
}

/// Runs `check` on `cases` values of `strategy` (a panic fails the test with the shrunk
/// input); returns how many it returned true for, so a test can show that its cases get past
/// the parser's first error into the code behind it.
pub fn count<S: Strategy>(cases: u32, strategy: S, check: impl Fn(S::Value) -> bool) -> u32 {
    let hits = std::cell::Cell::new(0u32);
    proptest::test_runner::TestRunner::new(config(cases))
        .run(&strategy, |value| {
            if check(value) {
                hits.set(hits.get() + 1);
            }
            Ok(())
        })
        .expect("no case panics");
    hits.get()
}

/// Structured inputs built from a sequence of choices (as Hypothesis does): each field of a
/// generated document reads the next number, and 0 means its first, most ordinary option.
/// One `Vec<u32>` strategy costs microseconds where nested `prop_oneof!`s cost a millisecond
/// a value in a debug build, and proptest still shrinks every choice toward 0, the plainest
/// document.
pub struct Choices<'a> {
    values: &'a [u32],
    next: usize,
}

impl<'a> Choices<'a> {
    /// Reads `values` from the start; past the end every choice is 0.
    pub fn new(values: &'a [u32]) -> Self {
        Choices { values, next: 0 }
    }

    /// The next raw choice.
    pub fn next(&mut self) -> u32 {
        let v = self.values.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        v
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }

    /// True `percent` of the time; a 0 choice is true.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }

    /// One of `list`.
    pub fn pick<T: Copy>(&mut self, list: &[T]) -> T {
        list[self.below(list.len() as u32) as usize]
    }

    /// Usually (3 in 4) one of `usual`, else one of `odd`.
    pub fn mostly<T: Copy>(&mut self, usual: &[T], odd: &[T]) -> T {
        if self.below(4) < 3 {
            self.pick(usual)
        } else {
            self.pick(odd)
        }
    }

    /// Any 64-bit number.
    pub fn u64(&mut self) -> u64 {
        (u64::from(self.next()) << 32) | u64::from(self.next())
    }

    /// Text of up to `max` characters: YAML's punctuation, digits, letters, spaces, line
    /// breaks and any other Unicode scalar value.
    pub fn text(&mut self, max: u32) -> String {
        const ASCII: &[u8] = b" \n\t:-?,[]{}#&*!|>'\"%@`.0123456789azAZ_/\\~+=";
        let len = self.below(max + 1);
        (0..len)
            .map(|_| {
                let c = self.next();
                if c.is_multiple_of(4) {
                    char::from_u32((c >> 2) % 0x11_0000).unwrap_or('\u{fffd}')
                } else {
                    char::from(ASCII[(c >> 2) as usize % ASCII.len()])
                }
            })
            .collect()
    }
}

/// A value built from `n` choices (see [`Choices`]).
pub fn from_choices<T: std::fmt::Debug>(
    n: usize,
    build: impl Fn(&mut Choices<'_>) -> T,
) -> impl Strategy<Value = T> {
    prop::collection::vec(any::<u32>(), n).prop_map(move |v| build(&mut Choices::new(&v)))
}
