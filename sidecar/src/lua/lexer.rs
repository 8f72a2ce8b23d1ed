//! A minimal Lua lexer for what the loader checks and rewrites in template source before Lua
//! sees it: words, quoted strings (with their byte ranges), and `<` / `>`; comments, long
//! strings and whitespace are skipped, everything else is `Other`. Lines are counted so
//! findings can name them.

use std::ops::Range;

/// A token and where it is in the source.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Token {
    /// A name, keyword or number.
    Word(Range<usize>),
    /// A quoted string, quotes included.
    Quoted(Range<usize>),
    /// `<` (not `<=` or `<<`).
    Lt,
    /// `>` (not `>=` or `>>`).
    Gt,
    /// Anything else (long strings included).
    Other,
}

/// Tokens of one source, in order.
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    /// The line the lexer is on (1-based).
    pub(crate) line: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub(crate) fn new(src: &'a [u8]) -> Self {
        Lexer {
            src,
            pos: 0,
            line: 1,
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek(0)?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// At `[`, the level of a long bracket opening here (`[[` is 0, `[==[` is 2).
    fn long_bracket_level(&self) -> Option<usize> {
        if self.peek(0) != Some(b'[') {
            return None;
        }
        let mut level = 0;
        while self.peek(1 + level) == Some(b'=') {
            level += 1;
        }
        (self.peek(1 + level) == Some(b'[')).then_some(level)
    }

    /// Skips a long string or comment from its opening bracket to its matching close.
    fn skip_long_bracket(&mut self) {
        let Some(level) = self.long_bracket_level() else {
            return;
        };
        self.pos += level + 2;
        while let Some(c) = self.bump() {
            if c == b']'
                && (0..level).all(|i| self.peek(i) == Some(b'='))
                && self.peek(level) == Some(b']')
            {
                self.pos += level + 1;
                return;
            }
        }
    }

    /// Skips a quoted string from its opening quote, honouring backslash escapes.
    fn skip_quoted(&mut self, quote: u8) {
        self.pos += 1;
        while let Some(c) = self.bump() {
            match c {
                b'\\' => {
                    self.bump();
                }
                b'\n' => return, // unfinished string: Lua reports it
                c if c == quote => return,
                _ => {}
            }
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    /// The next token, skipping whitespace and comments.
    fn next(&mut self) -> Option<Token> {
        loop {
            let c = self.peek(0)?;
            match c {
                b'-' if self.peek(1) == Some(b'-') => {
                    self.pos += 2;
                    if self.long_bracket_level().is_some() {
                        self.skip_long_bracket();
                    } else {
                        while self.peek(0).is_some_and(|c| c != b'\n') {
                            self.pos += 1;
                        }
                    }
                }
                b'[' if self.long_bracket_level().is_some() => {
                    self.skip_long_bracket();
                    return Some(Token::Other);
                }
                b'\'' | b'"' => {
                    let start = self.pos;
                    self.skip_quoted(c);
                    return Some(Token::Quoted(start..self.pos));
                }
                c if c.is_ascii_whitespace() => {
                    self.bump();
                }
                c if c.is_ascii_alphanumeric() || c == b'_' => {
                    let start = self.pos;
                    while self
                        .peek(0)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                    {
                        self.pos += 1;
                    }
                    return Some(Token::Word(start..self.pos));
                }
                b'<' | b'>' => {
                    self.pos += 1;
                    // `<=`, `<<`, `>=`, `>>` are other operators.
                    if matches!(self.peek(0), Some(b'=' | b'<' | b'>')) {
                        self.pos += 1;
                        return Some(Token::Other);
                    }
                    return Some(if c == b'<' { Token::Lt } else { Token::Gt });
                }
                _ => {
                    self.pos += 1;
                    return Some(Token::Other);
                }
            }
        }
    }
}
