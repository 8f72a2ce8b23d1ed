//! Lua patterns (the language of `string.find`, `match`, `gmatch`, `gsub`), matched in Rust so
//! that the work is bounded: Lua's own matcher runs in C, where the budget hook never fires, and
//! a backtracking pattern kept a call busy for 10.7 s past its 1 s deadline. Here every step of
//! the matcher counts, and every [`POLL_EVERY`] steps the caller's `stop` check runs (the
//! sandbox checks the call's deadline there).
//!
//! The semantics are Lua 5.4's `lstrlib.c` (same classes, sets, captures, `%b`, `%f`, back
//! references, the 200-level recursion limit and 32 captures, and the same error messages); the
//! differential tests run both matchers on the same inputs.

/// Steps of the matcher between two `stop` checks (a step is one attempt of the recursive
/// matcher, tens of nanoseconds).
pub const POLL_EVERY: u64 = 4096;
/// Lua's `LUA_MAXCAPTURES`.
const MAX_CAPTURES: usize = 32;
/// Lua's `MAXCCALLS`: recursion depth of the matcher.
const MAX_DEPTH: usize = 200;
const ESC: u8 = b'%';
/// Characters that make a pattern more than a plain string (`find` then searches plainly).
pub const SPECIALS: &[u8] = b"^$*+?.([%-";

/// Why a match did not run to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abort {
    /// A malformed pattern, with Lua's message.
    Pattern(String),
    /// The `stop` check asked to stop.
    Stopped,
}

fn malformed(msg: impl Into<String>) -> Abort {
    Abort::Pattern(msg.into())
}

/// A capture of a successful match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// A substring of the subject: `start..end` (0-based, exclusive end).
    Text(usize, usize),
    /// A position capture `()`: 1-based, as Lua returns it.
    Position(usize),
}

#[derive(Clone, Copy)]
enum CapLen {
    Unfinished,
    Position,
    Len(usize),
}

/// One matcher over a subject and a pattern.
pub struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    caps: [(usize, CapLen); MAX_CAPTURES],
    depth: usize,
    steps: u64,
    stop: &'a mut dyn FnMut() -> bool,
}

impl<'a> Matcher<'a> {
    /// A matcher of `pat` against `src`; `stop` is asked every [`POLL_EVERY`] steps.
    pub fn new(src: &'a [u8], pat: &'a [u8], stop: &'a mut dyn FnMut() -> bool) -> Self {
        Matcher {
            src,
            pat,
            level: 0,
            caps: [(0, CapLen::Unfinished); MAX_CAPTURES],
            depth: MAX_DEPTH,
            steps: 0,
            stop,
        }
    }

    /// Tries the pattern from pattern offset `p` at subject offset `s` only; the end of the
    /// match when it matches there.
    pub fn match_at(&mut self, s: usize, p: usize) -> Result<Option<usize>, Abort> {
        self.level = 0;
        self.depth = MAX_DEPTH;
        self.do_match(s, p)
    }

    /// The captures of the last successful match `s..e`; the whole match when the pattern has
    /// none and `whole_if_none`.
    pub fn captures(&self, s: usize, e: usize, whole_if_none: bool) -> Result<Vec<Capture>, Abort> {
        let n = if self.level == 0 && whole_if_none {
            1
        } else {
            self.level
        };
        (0..n).map(|i| self.capture(i, s, e)).collect()
    }

    /// Capture `i` (0-based) of the match `s..e`, as `%1`..`%9` of `gsub` name them.
    pub fn capture(&self, i: usize, s: usize, e: usize) -> Result<Capture, Abort> {
        if i >= self.level {
            if i != 0 {
                return Err(malformed(format!("invalid capture index %{}", i + 1)));
            }
            return Ok(Capture::Text(s, e));
        }
        let (init, len) = self.caps[i];
        match len {
            CapLen::Unfinished => Err(malformed("unfinished capture")),
            CapLen::Position => Ok(Capture::Position(init + 1)),
            CapLen::Len(l) => Ok(Capture::Text(init, init + l)),
        }
    }

    fn step(&mut self) -> Result<(), Abort> {
        self.steps += 1;
        if self.steps.is_multiple_of(POLL_EVERY) && (self.stop)() {
            return Err(Abort::Stopped);
        }
        Ok(())
    }

    fn do_match(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>, Abort> {
        if self.depth == 0 {
            return Err(malformed("pattern too complex"));
        }
        self.depth -= 1;
        let result = self.match_body(&mut s, &mut p);
        self.depth += 1;
        result
    }

    fn match_body(&mut self, s: &mut usize, p: &mut usize) -> Result<Option<usize>, Abort> {
        let (pat, src) = (self.pat, self.src);
        loop {
            self.step()?;
            if *p == pat.len() {
                return Ok(Some(*s));
            }
            match pat[*p] {
                b'(' => {
                    return if pat.get(*p + 1) == Some(&b')') {
                        self.start_capture(*s, *p + 2, CapLen::Position)
                    } else {
                        self.start_capture(*s, *p + 1, CapLen::Unfinished)
                    };
                }
                b')' => return self.end_capture(*s, *p + 1),
                b'$' if *p + 1 == pat.len() => {
                    return Ok((*s == src.len()).then_some(*s));
                }
                ESC if pat.get(*p + 1) == Some(&b'b') => match self.match_balance(*s, *p + 2)? {
                    Some(e) => {
                        *s = e;
                        *p += 4;
                        continue;
                    }
                    None => return Ok(None),
                },
                ESC if pat.get(*p + 1) == Some(&b'f') => {
                    *p += 2;
                    if pat.get(*p) != Some(&b'[') {
                        return Err(malformed("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(*p)?;
                    let prev = if *s == 0 { 0 } else { src[*s - 1] };
                    let cur = src.get(*s).copied().unwrap_or(0);
                    if !self.bracket_class(prev, *p, ep - 1) && self.bracket_class(cur, *p, ep - 1)
                    {
                        *p = ep;
                        continue;
                    }
                    return Ok(None);
                }
                ESC if pat.get(*p + 1).is_some_and(u8::is_ascii_digit) => {
                    match self.match_capture(*s, pat[*p + 1])? {
                        Some(e) => {
                            *s = e;
                            *p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {}
            }
            // A single-character class, possibly followed by a repetition.
            let ep = self.class_end(*p)?;
            let rep = pat.get(ep).copied();
            if !self.single_match(*s, *p, ep) {
                if matches!(rep, Some(b'*' | b'?' | b'-')) {
                    *p = ep + 1;
                    continue;
                }
                return Ok(None);
            }
            return match rep {
                Some(b'?') => match self.do_match(*s + 1, ep + 1)? {
                    Some(e) => Ok(Some(e)),
                    None => {
                        *p = ep + 1;
                        continue;
                    }
                },
                Some(b'+') => self.max_expand(*s + 1, *p, ep),
                Some(b'*') => self.max_expand(*s, *p, ep),
                Some(b'-') => self.min_expand(*s, *p, ep),
                _ => {
                    *s += 1;
                    *p = ep;
                    continue;
                }
            };
        }
    }

    /// The end of the single-character class starting at `p`.
    fn class_end(&self, mut p: usize) -> Result<usize, Abort> {
        let pat = self.pat;
        let c = pat[p];
        p += 1;
        if c == ESC {
            if p >= pat.len() {
                return Err(malformed("malformed pattern (ends with '%')"));
            }
            return Ok(p + 1);
        }
        if c == b'[' {
            if pat.get(p) == Some(&b'^') {
                p += 1;
            }
            // The first character of a set is taken literally, even `]`.
            loop {
                if p >= pat.len() {
                    return Err(malformed("malformed pattern (missing ']')"));
                }
                let c = pat[p];
                p += 1;
                if c == ESC && p < pat.len() {
                    p += 1;
                }
                if pat.get(p) == Some(&b']') {
                    return Ok(p + 1);
                }
            }
        }
        Ok(p)
    }

    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat[p] {
            b'.' => true,
            ESC => class_matches(c, self.pat[p + 1]),
            b'[' => self.bracket_class(c, p, ep - 1),
            literal => literal == c,
        }
    }

    /// Whether `c` is in the set `[...]` that opens at `p` and closes at `ec`.
    fn bracket_class(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let pat = self.pat;
        let mut sig = true;
        if pat.get(p + 1) == Some(&b'^') {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                return !sig;
            }
            if pat[p] == ESC {
                p += 1;
                if class_matches(c, pat[p]) {
                    return sig;
                }
            } else if pat.get(p + 1) == Some(&b'-') && p + 2 < ec {
                p += 2;
                if pat[p - 2] <= c && c <= pat[p] {
                    return sig;
                }
            } else if pat[p] == c {
                return sig;
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Result<Option<usize>, Abort> {
        let mut i = 0;
        while self.single_match(s + i, p, ep) {
            i += 1;
        }
        loop {
            if let Some(e) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(e));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Result<Option<usize>, Abort> {
        loop {
            if let Some(e) = self.do_match(s, ep + 1)? {
                return Ok(Some(e));
            }
            if self.single_match(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: CapLen) -> Result<Option<usize>, Abort> {
        if self.level >= MAX_CAPTURES {
            return Err(malformed("too many captures"));
        }
        self.caps[self.level] = (s, what);
        self.level += 1;
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.level -= 1;
        }
        Ok(r)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>, Abort> {
        let l = (0..self.level)
            .rev()
            .find(|&l| matches!(self.caps[l].1, CapLen::Unfinished))
            .ok_or_else(|| malformed("invalid pattern capture"))?;
        self.caps[l].1 = CapLen::Len(s - self.caps[l].0);
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.caps[l].1 = CapLen::Unfinished;
        }
        Ok(r)
    }

    fn match_balance(&self, s: usize, p: usize) -> Result<Option<usize>, Abort> {
        let pat = self.pat;
        if p + 1 >= pat.len() {
            return Err(malformed("malformed pattern (missing arguments to '%b')"));
        }
        if self.src.get(s) != Some(&pat[p]) {
            return Ok(None);
        }
        let (open, close) = (pat[p], pat[p + 1]);
        let mut depth = 1;
        for (i, &c) in self.src.iter().enumerate().skip(s + 1) {
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }

    fn match_capture(&self, s: usize, digit: u8) -> Result<Option<usize>, Abort> {
        let l = usize::from(digit - b'0');
        let cap = l
            .checked_sub(1)
            .filter(|&i| i < self.level)
            .map(|i| self.caps[i]);
        let (init, len) = match cap {
            Some((init, CapLen::Len(len))) => (init, len),
            // Lua compares a position capture's length, -2 as size_t: never a match.
            Some((_, CapLen::Position)) => return Ok(None),
            _ => return Err(malformed(format!("invalid capture index %{l}"))),
        };
        let src = self.src;
        Ok((src.len() - s >= len && src[init..init + len] == src[s..s + len]).then_some(s + len))
    }
}

/// Lua's `match_class`: `%a`, `%d`, ... in the C locale; an upper-case letter complements.
fn class_matches(c: u8, class: u8) -> bool {
    let yes = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c < 32 || c == 127,
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0, // deprecated, still in Lua 5.4
        _ => return class == c,
    };
    if class.is_ascii_uppercase() {
        !yes
    } else {
        yes
    }
}

/// Whether `find` may search for `pat` as a plain string.
pub fn has_specials(pat: &[u8]) -> bool {
    pat.iter().any(|c| SPECIALS.contains(c))
}

/// The first match of `pat` in `src` at or after `init` (0-based) whose end is not
/// `not_ending_at` (what `gmatch` and `gsub` skip: an empty match right after the previous
/// one). A leading `^` anchors the search at `init` when `anchor` is honoured (`find`, `match`,
/// `gsub`; `gmatch` takes `^` literally). Returns the match's start, end and the matcher (for
/// its captures).
pub fn search<'a>(
    src: &'a [u8],
    pat: &'a [u8],
    init: usize,
    not_ending_at: Option<usize>,
    honour_anchor: bool,
    stop: &'a mut dyn FnMut() -> bool,
) -> Result<Option<(usize, usize, Matcher<'a>)>, Abort> {
    let anchored = honour_anchor && pat.first() == Some(&b'^');
    let p0 = usize::from(anchored);
    let mut m = Matcher::new(src, pat, stop);
    let mut s = init;
    while s <= src.len() {
        if let Some(e) = m.match_at(s, p0)? {
            if Some(e) != not_ending_at {
                return Ok(Some((s, e, m)));
            }
        }
        if anchored {
            break;
        }
        s += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
