use super::find;

#[test]
fn finds_close_attributes_with_their_line() {
    assert_eq!(find(b"local x <close> = v"), Some(1));
    assert_eq!(find(b"\n\nlocal a <const>, b < close > = 1, 2"), Some(3));
    assert_eq!(find(b"local x <--[[ c ]] close\n> = v"), Some(1));
    assert_eq!(
        find(b"local t = '<close>'\nlocal y\n<\nclose> = 1"),
        Some(3)
    );
    assert_eq!(find(b"local close <close> = v"), Some(1));
}

#[test]
fn ignores_strings_comments_and_other_operators() {
    for src in [
        &b"local x <const> = 1"[..],
        b"local s = \"<close>\" .. '<close>' .. \"\\\"<close>\"",
        b"local s = [==[ ]] <close> ]=] ]==]",
        b"-- local x <close> = v",
        b"--[[ local x <close> = v ]] local y = 1",
        b"--[=[ ]] local x <close> = v ]=]",
        b"if a <= close >= b then end",
        b"local close = 1 return 1 < close",
        b"f(close > 1)",
    ] {
        assert_eq!(find(src), None, "{}", String::from_utf8_lossy(src));
    }
}
