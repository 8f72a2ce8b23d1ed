use super::*;

#[test]
fn reads_the_gauge_and_ignores_look_alikes() {
    let text = "# HELP edgeway_sidecar_tunnel_up x\nedgeway_sidecar_tunnel_up_other 1\nedgeway_sidecar_tunnel_up 1\n";
    let up = |up, proxy_failing| {
        Some(Probe {
            up,
            proxy_failing,
            queue_write_failing: false,
            credentials_refused: false,
        })
    };
    assert_eq!(parse(text), up(true, false));
    assert_eq!(parse("edgeway_sidecar_tunnel_up 0\n"), up(false, false));
    assert_eq!(parse("nothing here\n"), None);
}

#[test]
fn reads_a_failing_proxy() {
    let text = "edgeway_sidecar_tunnel_up 0\n\
        edgeway_sidecar_tunnel_connect_failing{stage=\"tls\"} 0\n\
        edgeway_sidecar_tunnel_connect_failing{stage=\"proxy\"} 1\n";
    assert_eq!(
        parse(text),
        Some(Probe {
            up: false,
            proxy_failing: true,
            queue_write_failing: false,
            credentials_refused: false,
        })
    );
    let text = text.replace("\"proxy\"} 1", "\"proxy\"} 0");
    assert_eq!(
        parse(&text),
        Some(Probe {
            up: false,
            proxy_failing: false,
            queue_write_failing: false,
            credentials_refused: false,
        })
    );
}

#[test]
fn reads_a_failing_queue_volume() {
    let text = "edgeway_sidecar_tunnel_up 1\n\
        edgeway_sidecar_tunnel_queue_write_failing 1\n\
        edgeway_sidecar_tunnel_queue_write_errors_total 3\n";
    assert!(parse(text).unwrap().queue_write_failing);
    let text = text.replace("failing 1", "failing 0");
    assert!(!parse(&text).unwrap().queue_write_failing);
}

#[test]
fn reads_a_refused_login() {
    let text = "edgeway_sidecar_tunnel_up 0\n\
        edgeway_sidecar_tunnel_connect_failing{stage=\"proxy\"} 0\n\
        edgeway_sidecar_tunnel_connect_failing{stage=\"credentials\"} 1\n";
    let p = parse(text).unwrap();
    assert!(p.credentials_refused && !p.proxy_failing && !p.up);
    let text = text.replace("\"credentials\"} 1", "\"credentials\"} 0");
    assert!(!parse(&text).unwrap().credentials_refused);
}
