use super::*;

#[test]
fn reads_the_gauge_and_ignores_look_alikes() {
    let text = "# HELP edgeway_sidecar_tunnel_up x\nedgeway_sidecar_tunnel_up_other 1\nedgeway_sidecar_tunnel_up 1\n";
    assert_eq!(parse(text), Some(true));
    assert_eq!(parse("edgeway_sidecar_tunnel_up 0\n"), Some(false));
    assert_eq!(parse("nothing here\n"), None);
}
