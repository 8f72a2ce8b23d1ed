use super::*;

fn never() -> impl FnMut() -> bool {
    || false
}

fn find(src: &str, pat: &str) -> Result<Option<(usize, usize)>, Abort> {
    let mut stop = never();
    Ok(search(src.as_bytes(), pat.as_bytes(), 0, None, true, &mut stop)?.map(|(s, e, _)| (s, e)))
}

#[test]
fn matches_report_spans_and_captures() {
    assert_eq!(find("hello", "l+"), Ok(Some((2, 4))));
    assert_eq!(find("hello", "^l"), Ok(None));
    assert_eq!(find("hello", "o$"), Ok(Some((4, 5))));
    let mut stop = never();
    let (s, e, m) = search(b"k=v", b"(%w)=()(%w)", 0, None, true, &mut stop)
        .unwrap()
        .unwrap();
    assert_eq!(
        m.captures(s, e, true).unwrap(),
        [
            Capture::Text(0, 1),
            Capture::Position(3),
            Capture::Text(2, 3)
        ]
    );
}

#[test]
fn malformed_patterns_are_errors() {
    assert_eq!(
        find("a", "%"),
        Err(Abort::Pattern("malformed pattern (ends with '%')".into()))
    );
    assert_eq!(
        find("a", "[a"),
        Err(Abort::Pattern("malformed pattern (missing ']')".into()))
    );
    assert_eq!(
        find("a", "a)"),
        Err(Abort::Pattern("invalid pattern capture".into()))
    );
}

#[test]
fn a_backtracking_pattern_is_stopped_by_its_check() {
    // 400 characters against six lazy wildcards: about 400^6 steps for Lua's own matcher.
    let src = "a".repeat(400);
    let pat = format!("{}b", ".-".repeat(6));
    let mut polls = 0;
    let mut stop = || {
        polls += 1;
        polls > 100
    };
    let r = search(src.as_bytes(), pat.as_bytes(), 0, None, true, &mut stop);
    assert_eq!(r.err(), Some(Abort::Stopped));
    assert_eq!(polls, 101, "stopped at the first check that said so");
}

#[test]
fn recursion_is_limited_as_in_lua() {
    let pat = "a?".repeat(300) + &"a".repeat(300);
    assert_eq!(
        find(&"a".repeat(300), &pat),
        Err(Abort::Pattern("pattern too complex".into()))
    );
}
