//! `config.json` as the EMS reads it: JSON with `//` and `/* */` comments. Comments are blanked
//! out (newlines kept, so serde_json's line numbers stay the file's) and the rest parsed.

use super::ImportError;
use serde_json::Value;
use std::path::Path;

/// Parses EMS-style JSON with comments; errors name the file and line.
pub fn parse(path: &Path, text: &str) -> Result<Value, ImportError> {
    let plain = strip_comments(text)
        .map_err(|line| ImportError::at(path, line, "a /* comment is never closed"))?;
    serde_json::from_str(&plain).map_err(|e| {
        ImportError::at(
            path,
            e.line(),
            format!("not JSON after comments are removed: {e}"),
        )
    })
}

/// The text with every comment outside strings replaced by spaces; `Err(line)` for an
/// unterminated block comment starting on `line`.
pub fn strip_comments(text: &str) -> Result<String, usize> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let (mut i, mut line) = (0, 1);
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            match b {
                b'\\' if i + 1 < bytes.len() => {
                    out.push(bytes[i + 1]);
                    i += 1;
                }
                b'"' => in_string = false,
                b'\n' => line += 1,
                _ => {}
            }
            i += 1;
            continue;
        }
        match (b, bytes.get(i + 1)) {
            (b'"', _) => {
                in_string = true;
                out.push(b);
                i += 1;
            }
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let start = line;
                out.extend_from_slice(b"  ");
                i += 2;
                loop {
                    match (bytes.get(i), bytes.get(i + 1)) {
                        (None, _) => return Err(start),
                        (Some(b'*'), Some(b'/')) => {
                            out.extend_from_slice(b"  ");
                            i += 2;
                            break;
                        }
                        (Some(b'\n'), _) => {
                            out.push(b'\n');
                            line += 1;
                            i += 1;
                        }
                        (Some(_), _) => {
                            out.push(b' ');
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                if b == b'\n' {
                    line += 1;
                }
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced by ASCII, so the text stays UTF-8.
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// The line of the first `"key"` in `text` (1 when absent): where an error about a key points.
pub fn line_of(text: &str, key: &str) -> usize {
    let quoted = format!("\"{key}\"");
    text.find(&quoted)
        .map(|at| text[..at].matches('\n').count() + 1)
        .unwrap_or(1)
}

/// The line of `scripts.<key>` (or `scripts["<key>"]`) in a `config.lua`; 1 when not found.
pub fn line_of_lua(text: &str, key: &str) -> usize {
    [format!("scripts.{key}"), format!("scripts[\"{key}\"]")]
        .iter()
        .filter_map(|p| text.find(p.as_str()))
        .min()
        .map(|at| text[..at].matches('\n').count() + 1)
        .unwrap_or(1)
}
