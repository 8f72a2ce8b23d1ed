use super::*;

#[test]
fn short_and_long_string_prefixes() {
    let mut w = Writer::new();
    w.string("abc");
    w.string(&"x".repeat(127));
    w.string(&"y".repeat(128));
    let bytes = w.into_bytes();
    assert_eq!(&bytes[..4], b"\x03abc");
    assert_eq!(bytes[4], 127);
    assert_eq!(&bytes[4 + 128..4 + 128 + 4], &[0x80, 0, 0, 128]);
    let mut r = Reader::new(&bytes);
    assert_eq!(r.string().unwrap(), "abc");
    assert_eq!(r.string().unwrap().len(), 127);
    assert_eq!(r.string().unwrap().len(), 128);
    r.finish().unwrap();
}

#[test]
fn huge_length_is_rejected_without_allocating() {
    let mut r = Reader::new(&[0xFF, 0xFF, 0xFF, 0xFF, b'a']);
    assert!(matches!(
        r.string(),
        Err(CodecError::LengthTooLarge { offset: 0, .. })
    ));
    let mut r = Reader::new(&[0xFF, 0xFF, 0xFF, 0xFF]);
    assert!(matches!(r.blob(), Err(CodecError::LengthTooLarge { .. })));
}

#[test]
fn truncation_reports_offset() {
    let mut r = Reader::new(&[1, 2, 3]);
    r.u8().unwrap();
    assert_eq!(
        r.u32(),
        Err(CodecError::Truncated {
            offset: 1,
            needed: 4,
            available: 2
        })
    );
}
