use super::*;

fn rewrite(src: &str) -> String {
    String::from_utf8(lua51_escapes(src.as_bytes()).into_owned()).unwrap()
}

#[test]
fn unknown_escapes_keep_their_character_as_in_lua51() {
    // The field template from the issue: `\.` in a pattern.
    assert_eq!(
        rewrite(r#"local v = s:match("temp=(%d+\.%d+)")"#),
        r#"local v = s:match("temp=(%d+.%d+)")"#
    );
    // 5.4's own escapes are letters in 5.1.
    assert_eq!(rewrite(r#"x = '\x41\z\u{48}'"#), r#"x = 'x41zu{48}'"#);
    // Known escapes, decimal escapes and escaped quotes stay.
    for same in [
        r#"x = "a\tb\n\\\"\'\65\0""#,
        "x = 'line\\\nnext'",
        r#"x = [[ \. stays in a long string ]]"#,
        r#"-- "\." in a comment"#,
        r#"--[==[ "\." ]==] y = 1"#,
    ] {
        assert_eq!(rewrite(same), same);
        assert!(matches!(lua51_escapes(same.as_bytes()), Cow::Borrowed(_)));
    }
}

#[test]
fn only_quoted_strings_change_and_lines_stay() {
    let src = "a = '\\.'\n-- '\\.'\nb = [[\\.]]\nc = \"\\%\"\n";
    assert_eq!(rewrite(src), "a = '.'\n-- '\\.'\nb = [[\\.]]\nc = \"%\"\n");
    assert_eq!(rewrite(src).lines().count(), src.lines().count());
}

#[test]
fn an_unfinished_string_is_left_to_lua() {
    // A backslash right before the end of the source or of an unfinished string: no change,
    // Lua reports the error at its line.
    for src in ["x = '\\", "x = 'abc\\", "x = \"\\.\n"] {
        let out = rewrite(src);
        assert_eq!(
            out.len() + usize::from(src.contains("\\.")),
            src.len(),
            "{src:?}"
        );
    }
}
