use super::*;

#[test]
fn updates_round_trip_through_the_params_table() {
    let ups = vec![
        PropertyUpdate::good("temp", Primitive::Number(21.5), 1_700_000_000_000),
        PropertyUpdate {
            name: "on".into(),
            value: Primitive::Boolean(true),
            time: 5,
            quality: "UNKNOWN".into(),
        },
    ];
    let params = update_params(&ups);
    assert_eq!(params.shape.fields[0].base_type, WireType::InfoTable);
    let bytes = params.to_bytes();
    let back = InfoTable::from_bytes(&bytes).unwrap();
    assert_eq!(read_updates(&back).unwrap(), ups);
}

#[test]
fn direct_encoding_matches_the_generic_message() {
    let ups = [
        PropertyUpdate::good("temp", Primitive::Number(21.5), 1_700_000_000_000),
        PropertyUpdate {
            name: "on".into(),
            value: Primitive::Boolean(true),
            time: 5,
            quality: "UNKNOWN".into(),
        },
        PropertyUpdate::good("label", Primitive::string("x".repeat(200)), -1),
        PropertyUpdate::good("wrapped", Primitive::variant(Primitive::Integer(7)), 9),
    ];
    for rows in [&ups[..0], &ups[..1], &ups[..]] {
        let header = Header {
            request_id: 77,
            endpoint_id: 0,
            session_id: 0xDEAD_BEEF,
        };
        let generic = Message::update_subscribed_property_values(77, "dev-42", rows)
            .with_session(0xDEAD_BEEF)
            .encode();
        let direct = encode_update_subscribed_property_values(
            &header,
            "dev-42",
            rows.iter().map(|u| VtqRef {
                name: &u.name,
                value: &u.value,
                time: u.time,
                quality: &u.quality,
            }),
        );
        assert_eq!(direct, generic);
    }
    // Large enough to go multipart: splitting the direct bytes gives the generic chunks.
    let many: Vec<PropertyUpdate> = (0..500)
        .map(|i| PropertyUpdate::good("n", Primitive::Number(f64::from(i)), i64::from(i)))
        .collect();
    let header = Header {
        request_id: 3,
        endpoint_id: 0,
        session_id: 9,
    };
    let msg = Message::update_subscribed_property_values(3, "dev-1", &many).with_session(9);
    let direct = encode_update_subscribed_property_values(
        &header,
        "dev-1",
        many.iter().map(|u| VtqRef {
            name: &u.name,
            value: &u.value,
            time: u.time,
            quality: &u.quality,
        }),
    );
    for chunk in [1024, 8192] {
        let generic = crate::split(&msg, chunk).unwrap();
        let split = crate::multipart::split_encoded(direct.clone(), chunk).unwrap();
        assert!(split.len() > 1);
        assert_eq!(split, generic);
    }
}
