//! Finds to-be-closed variables (`local x <close> = ...`) in template source, which the loader
//! refuses: when an error unwinds a frame (the budget hook's own errors included), Lua runs its
//! `__close` handlers with hooks disabled, so they would run outside the instruction and
//! deadline limits.

/// The line of the first `<close>` attribute in Lua `source`, skipping strings and comments.
/// Any `Name < close >` token sequence counts: as an expression it compares a boolean with a
/// value, which no working script does.
pub(crate) fn find(source: &[u8]) -> Option<usize> {
    let mut lexer = Lexer {
        src: source,
        pos: 0,
        line: 1,
    };
    // The last three tokens before the current one.
    let mut recent: [Token; 3] = [Token::Other, Token::Other, Token::Other];
    let mut lt_line = 0;
    while let Some(token) = lexer.next() {
        if token == Token::Gt
            && recent[2] == Token::Close
            && recent[1] == Token::Lt
            && matches!(recent[0], Token::Name | Token::Close)
        {
            return Some(lt_line);
        }
        if token == Token::Lt {
            lt_line = lexer.line;
        }
        recent = [recent[1], recent[2], token];
    }
    None
}

/// Just the tokens the search needs; everything else is `Other`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Token {
    Name,
    Close,
    Lt,
    Gt,
    Other,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
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

    /// The next token, skipping whitespace, comments and string contents.
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
                    self.skip_quoted(c);
                    return Some(Token::Other);
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
                    let word = &self.src[start..self.pos];
                    return Some(match word {
                        b"close" => Token::Close,
                        _ if word[0].is_ascii_digit() => Token::Other,
                        _ => Token::Name,
                    });
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

#[cfg(test)]
mod tests;
