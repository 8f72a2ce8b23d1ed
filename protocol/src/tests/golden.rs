//! Byte-exact encodings derived by hand from the Edge C SDK's encode functions
//! (twMessages.c, twBaseTypes.c, twInfoTable.c, twApi.c). Each test names the function
//! whose output it reproduces; see docs/protocol.md for the repositories.

use crate::multipart::split;
use crate::vtq::{update_params, PropertyUpdate};
use crate::*;

/// Parses a hex literal with optional whitespace, for readable expectations.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn check(msg: &Message, expected: &str) {
    let bytes = msg.encode();
    assert_eq!(bytes, hex(expected), "encoding of {msg:?}");
    assert_eq!(&Message::decode(&bytes).unwrap(), msg);
}

/// twApi_Authenticate -> twMessage_CreateAuthMsg("appKey", key) -> twMessage_Send:
/// header with session id -1 (set for TW_AUTH), twAuthBody_ToStream: count 1, name, value.
#[test]
fn auth_app_key_abc() {
    check(
        &Message::auth(1, "abc"),
        "01 14 00000001 00000000 FFFFFFFF 00
         01 06 617070 4B6579 03 616263",
    );
}

/// twMessage_CreateBindMsg("T1", FALSE) sent after auth (session 7), no gateway:
/// twBindBody_ToStream writes marker 0, count as two bytes, then each name.
#[test]
fn bind_one_thing() {
    check(
        &Message::bind(2, None, &["T1"]).with_session(7),
        "01 0A 00000002 00000000 00000007 00
         00 0001 02 5431",
    );
}

/// twBindBody_ToStream with ws->gatewayName/gatewayType set: marker 1, name, type.
#[test]
fn unbind_with_gateway() {
    check(
        &Message::unbind(3, Some(("gw", "EMS")), &["T1"]).with_session(7),
        "01 0B 00000003 00000000 00000007 00
         01 02 6777 03 454D53 0001 02 5431",
    );
}

/// KEEP_ALIVE: only the code 0x1F is known (twDefinitions.h); the body is assumed empty.
#[test]
fn keep_alive_header_only() {
    check(
        &Message::keep_alive(3),
        "01 1F 00000003 00000000 00000000 00",
    );
}

/// twApi_ReadProperty -> makeRequest(TWX_GET, TW_THING, ..., TW_PROPERTIES, name, NULL):
/// twRequestBody_ToStream: entity type 0x0A, name, characteristic 1, name, 0 headers, NOTHING.
#[test]
fn get_property_request() {
    check(
        &Message::read_property(4, "T1", "temp").with_session(7),
        "01 01 00000004 00000000 00000007 00
         0A 02 5431 01 04 74656D70 00 FF",
    );
}

/// twApi_InvokeService with a one-field INTEGER table (twInfoTable_CreateFromInteger):
/// params type byte 5, then twInfoTable_ToStream.
#[test]
fn service_request_with_integer_param() {
    let params = InfoTable::from_primitive("p", Primitive::Integer(7));
    check(
        &Message::invoke_service(5, "T1", "Svc", Some(params)),
        "01 03 00000005 00000000 00000000 00
         0A 02 5431 02 03 537663 00
         05 01 01 70 00 16 0000 00
            01 0001 16 00000007 00",
    );
}

/// twMessage_CreateResponseMsg(TWX_SUCCESS, id, session, endpoint) with content set by
/// twResponseBody_SetContent(twInfoTable_CreateFromNumber("result", 1.5)):
/// reason marker 0, content type 5, data shape, one row, end marker.
#[test]
fn response_with_one_number_row() {
    let header = Header {
        request_id: 4,
        endpoint_id: 9,
        session_id: 7,
    };
    let content = InfoTable::from_primitive("result", Primitive::Number(1.5));
    check(
        &Message::response(header, StatusCode::SUCCESS, Some(content)),
        "01 40 00000004 00000009 00000007 00
         00 05
         01 06 726573756C74 00 01 0000 00
         01 0001 01 3FF8000000000000 00",
    );
}

/// An error response without content: reason marker 0, content NOTHING.
#[test]
fn not_found_response() {
    check(
        &Message::response(Header::new(8), StatusCode::NOT_FOUND, None),
        "01 84 00000008 00000000 00000000 00 00 FF",
    );
}

/// twApi_PushProperties: NamedVTQ table (name STRING, value VARIANT, time DATETIME,
/// quality STRING; NULL descriptions) inside a one-row `values` INFOTABLE table.
#[test]
fn update_subscribed_property_values_params() {
    let params = update_params(&[PropertyUpdate::good("temp", Primitive::Number(21.5), 1000)]);
    assert_eq!(
        params.to_bytes(),
        hex("01 06 76616C756573 00 05 0000 00
             01 0001 05
               01 04 6E616D65 00 00 0000
               01 05 76616C7565 00 12 0000
               01 04 74696D65 00 03 0000
               01 07 7175616C697479 00 00 0000
               00
               01 0004
                 00 04 74656D70
                 12 01 4035800000000000
                 03 00000000000003E8
                 00 04 474F4F44
               00
             00")
    );
}

/// twMessage_Send chunking of a response: header with marker 1, then chunk id, count and
/// the configured chunk size (here 26 = 0x1A), body bytes in slices of 26 - 15 - 6 = 5.
#[test]
fn multipart_response_chunks() {
    let msg = Message::Response(Response {
        header: Header::new(1),
        status: StatusCode::SUCCESS,
        reason: Some("abcdefgh".into()),
        content: None,
    });
    let frames = split(&msg, 26).unwrap();
    let expected = [
        "01 40 00000001 00000000 00000000 01 0001 0003 001A 01 08 616263",
        "01 40 00000001 00000000 00000000 01 0002 0003 001A 6465666768",
        "01 40 00000001 00000000 00000000 01 0003 0003 001A FF",
    ];
    assert_eq!(frames.len(), 3);
    for (f, e) in frames.iter().zip(expected) {
        assert_eq!(f, &hex(e));
    }
}

/// twMessage_Send chunking of a request: chunks after the first repeat entity type and
/// name; the effective size also subtracts that entity info (1 + 1 + name length).
#[test]
fn multipart_request_chunks_repeat_entity() {
    let msg = Message::invoke_service(2, "T", "S", None);
    // Body: 0A 01 54 02 01 53 00 FF (8 bytes; 8 + 21 > 28 so it is split);
    // chunk size 28 leaves 28 - 21 - 3 = 4 body bytes per chunk.
    let frames = split(&msg, 28).unwrap();
    let expected = [
        "01 03 00000002 00000000 00000000 01 0001 0002 001C 0A 01 54 02",
        "01 03 00000002 00000000 00000000 01 0002 0002 001C 0A 01 54 01 53 00 FF",
    ];
    assert_eq!(frames.len(), 2);
    for (f, e) in frames.iter().zip(expected) {
        assert_eq!(f, &hex(e));
    }
    let mut rx = Reassembler::default();
    let now = std::time::Instant::now();
    assert_eq!(rx.push(&frames[1], now).unwrap(), None);
    assert_eq!(rx.push(&frames[0], now).unwrap(), Some(msg));
}

/// A message that fits (body + 15 + 6 <= chunk size) stays a single frame with marker 0.
#[test]
fn small_message_is_not_split() {
    let msg = Message::auth(1, "abc");
    let frames = split(&msg, DEFAULT_CHUNK_SIZE).unwrap();
    assert_eq!(frames, vec![msg.encode()]);
}

/// The C SDK sizes an empty InfoTable cell as 2 bytes and writes 1 (twInfoTable.c,
/// twInfoTableRow_GetLength against twInfoTableRow_ToStream), and sends the message at the
/// size it computed: the frame ends in zero bytes after a complete message. They are padding.
#[test]
fn trailing_zero_padding_is_accepted_and_other_trailing_bytes_are_not() {
    let msg = Message::response(Header::new(8), StatusCode::NOT_FOUND, None);
    let mut padded = msg.encode();
    padded.extend_from_slice(&[0, 0]);
    assert_eq!(Message::decode(&padded).unwrap(), msg);
    let mut junk = msg.encode();
    junk.extend_from_slice(&[0, 1]);
    assert!(matches!(
        Message::decode(&junk),
        Err(CodecError::TrailingBytes { count: 2, .. })
    ));
}

/// The same padding at the end of a multipart message's last chunk.
#[test]
fn multipart_padding_is_accepted_in_the_last_chunk() {
    let msg = Message::invoke_service(2, "T", "S", None);
    let frames = split(&msg, 28).unwrap();
    let mut last = frames[1].clone();
    last.push(0);
    let mut rx = Reassembler::default();
    let now = std::time::Instant::now();
    assert_eq!(rx.push(&frames[0], now).unwrap(), None);
    assert_eq!(rx.push(&last, now).unwrap(), Some(msg.clone()));
    let mut bad = frames[1].clone();
    bad.push(7);
    let mut rx = Reassembler::default();
    assert_eq!(rx.push(&frames[0], now).unwrap(), None);
    assert!(matches!(
        rx.push(&bad, now),
        Err(CodecError::TrailingBytes { count: 1, .. })
    ));
}
