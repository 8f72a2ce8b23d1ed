//! Finds to-be-closed variables (`local x <close> = ...`) in template source, which the loader
//! refuses: when an error unwinds a frame (the budget hook's own errors included), Lua runs its
//! `__close` handlers with hooks disabled, so they would run outside the instruction and
//! deadline limits.

use super::lexer::{Lexer, Token};

/// The line of the first `<close>` attribute in Lua `source`, skipping strings and comments.
/// Any `Name < close >` token sequence counts: as an expression it compares a boolean with a
/// value, which no working script does.
pub(crate) fn find(source: &[u8]) -> Option<usize> {
    let mut lexer = Lexer::new(source);
    // The last three tokens before the current one.
    let mut recent: [Kind; 3] = [Kind::Other, Kind::Other, Kind::Other];
    let mut lt_line = 0;
    while let Some(token) = lexer.next() {
        let kind = match token {
            Token::Word(r) if &source[r.clone()] == b"close" => Kind::Close,
            Token::Word(r) if source[r.start].is_ascii_digit() => Kind::Other,
            Token::Word(_) => Kind::Name,
            Token::Lt => {
                lt_line = lexer.line;
                Kind::Lt
            }
            Token::Gt => Kind::Gt,
            Token::Quoted(_) | Token::Other => Kind::Other,
        };
        if kind == Kind::Gt
            && recent[2] == Kind::Close
            && recent[1] == Kind::Lt
            && matches!(recent[0], Kind::Name | Kind::Close)
        {
            return Some(lt_line);
        }
        recent = [recent[1], recent[2], kind];
    }
    None
}

/// Just the tokens the search needs; everything else is `Other`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Name,
    Close,
    Lt,
    Gt,
    Other,
}

#[cfg(test)]
mod tests;
