use super::*;

#[test]
fn context_takeover_round_trip() {
    let mut tx = PerMessageDeflate::new(1 << 20);
    let mut rx = PerMessageDeflate::new(1 << 20);
    let a = b"hello hello hello hello".repeat(20);
    let ca = tx.compress(&a);
    assert!(ca.len() < a.len());
    assert_eq!(rx.decompress(&ca).unwrap(), a);
    // The second copy refers back into the shared window and shrinks further.
    let cb = tx.compress(&a);
    assert!(cb.len() <= ca.len());
    assert_eq!(rx.decompress(&cb).unwrap(), a);
    assert_eq!(rx.decompress(&tx.compress(b"")).unwrap(), b"");
}

#[test]
fn inflate_limit_is_enforced() {
    let mut tx = PerMessageDeflate::new(1 << 20);
    let mut rx = PerMessageDeflate::new(100);
    let c = tx.compress(&[0u8; 10_000]);
    assert!(matches!(rx.decompress(&c), Err(CodecError::Decompress(_))));
}
