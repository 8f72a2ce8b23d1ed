//! The LSR's `script`, `http` and `https` property handlers, as links to another thing's
//! property on the same gateway.
//!
//! In the LSR, `handler = "script"` reads and writes the property through another script
//! resource, `key` being its REST path (`sample/property/number`, served at
//! `/scripts/sample/property/number`), and `http`/`https` do the same at a URL without its
//! scheme (`localhost:8001/scripts/sample/property/datetime`). Edgeway has no separate script
//! resources: a key names another *thing* of the gateway and one of its properties. A read
//! answers that property's current value, a write goes to it, and each scan copies it into the
//! linked property so its push rules apply. A URL to any host but the gateway itself is refused
//! at load: the sandbox makes no network calls (an upstream container behind the sidecar is
//! the way to reach a device's own API).

/// A property whose value lives in another thing's property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// The linked property of this thing.
    pub property: String,
    /// The thing holding the value.
    pub thing: String,
    /// Its property.
    pub target: String,
}

/// Hosts that are the gateway itself.
const LOCAL_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "::1"];

/// Reads a handler's `key` into (thing, property); the error says what is accepted.
pub(crate) fn parse_key(handler: &str, key: &str) -> Result<(String, String), String> {
    let path = match handler {
        "script" => key,
        "http" | "https" => {
            let (host_port, path) = key.split_once('/').unwrap_or((key, ""));
            let host = match host_port.rsplit_once(':') {
                Some((h, port)) if port.parse::<u16>().is_ok() => h,
                _ => host_port,
            };
            if !LOCAL_HOSTS.contains(&host.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "handler {handler:?} to {key:?}: only this gateway's own things can be \
                     read (localhost/scripts/<thing>/property/<name>); the Lua sandbox makes \
                     no network calls, so read a device's own API through an upstream \
                     container behind the sidecar (EdgeGateway spec.upstream) instead"
                ));
            }
            path
        }
        other => return Err(format!("handler {other:?} has no key form")),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let parts = match parts.as_slice() {
        ["scripts", rest @ ..] | ["Thingworx", "Things", rest @ ..] => rest,
        rest => rest,
    };
    match parts {
        [thing, kind, property] if is_properties(kind) => {
            Ok(((*thing).to_owned(), (*property).to_owned()))
        }
        [thing, property] => Ok(((*thing).to_owned(), (*property).to_owned())),
        _ => Err(format!(
            "handler {handler:?} key {key:?}: expected <thing>/property/<name> (as \
             sample/property/number), optionally after scripts/ or Thingworx/Things/"
        )),
    }
}

fn is_properties(s: &str) -> bool {
    s.eq_ignore_ascii_case("property") || s.eq_ignore_ascii_case("properties")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(handler: &str, key: &str) -> (String, String) {
        parse_key(handler, key).unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    #[test]
    fn keys_name_a_thing_and_its_property() {
        let want = ("sample".to_owned(), "number".to_owned());
        assert_eq!(ok("script", "sample/property/number"), want);
        assert_eq!(ok("script", "/scripts/sample/property/number"), want);
        assert_eq!(
            ok("script", "Thingworx/Things/sample/Properties/number"),
            want
        );
        assert_eq!(ok("script", "sample/number"), want);
        assert_eq!(
            ok("http", "localhost:8001/scripts/sample/property/number"),
            want
        );
        assert_eq!(ok("https", "127.0.0.1/sample/property/number"), want);
        assert_eq!(ok("http", "[::1]:8000/sample/property/number"), want);
    }

    #[test]
    fn other_hosts_and_shapeless_keys_are_refused_with_the_way_out() {
        let e = parse_key("http", "10.0.0.7:8080/api/temp").unwrap_err();
        assert!(
            e.contains("only this gateway's own things") && e.contains("spec.upstream"),
            "{e}"
        );
        let e = parse_key("https", "evil.example/scripts/a/property/b").unwrap_err();
        assert!(e.contains("no network calls"), "{e}");
        let e = parse_key("script", "just-a-name").unwrap_err();
        assert!(e.contains("<thing>/property/<name>"), "{e}");
    }
}
