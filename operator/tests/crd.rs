//! The committed CRD YAML matches the Rust types (regenerate with `edgeway-operator crd`).

use std::path::PathBuf;

/// `crds/` beside the crate once it lives in the workspace, else inside the crate.
fn crd_file() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let name = "edgeway.io_edgegateways.yaml";
    let beside = manifest.join("../crds").join(name);
    if beside.exists() {
        beside
    } else {
        manifest.join("crds").join(name)
    }
}

#[test]
fn committed_crd_matches_the_types() {
    let path = crd_file();
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (generate it with `edgeway-operator crd`)",
            path.display()
        )
    });
    let generated = edgeway_operator::crd_yaml(false).expect("generate CRD");
    assert!(
        committed == generated,
        "{} is out of date: run `cargo run -p edgeway-operator -- crd > {}`",
        path.display(),
        path.display()
    );
}

#[test]
fn crd_names_and_printer_columns() {
    let yaml = edgeway_operator::crd_yaml(false).unwrap();
    assert!(
        !yaml.contains("x-kubernetes-validations"),
        "the committed CRD must install on 1.20"
    );
    assert!(edgeway_operator::crd_yaml(true)
        .unwrap()
        .contains("x-kubernetes-validations"));
    for want in [
        "name: edgegateways.edgeway.io",
        "- egw",
        "scope: Namespaced",
        "name: v1alpha1",
        "status: {}",
        "name: Ready",
        "name: Devices",
        "name: Endpoint",
        "name: Age",
    ] {
        assert!(yaml.contains(want), "{want} missing");
    }
}

#[test]
fn the_example_gateway_renders_a_config_the_sidecar_accepts() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster/gateway.yaml");
    let text = std::fs::read_to_string(&path).expect("example");
    let mut gw: edgeway_operator::crd::EdgeGateway = serde_saphyr::from_str(&text).expect("parses");
    gw.metadata.namespace = Some("default".into());
    edgeway_operator::validate::spec(&gw).expect("valid");
    let names = edgeway_operator::resources::Names::new(&gw, "cluster.local");
    let config = edgeway_operator::resources::config::render(&gw.spec, "gw").unwrap();
    let files =
        edgeway_operator::resources::config::config_files(&gw.spec, &names, &config).unwrap();
    assert_eq!(files.len(), 3);
    for (key, text) in files {
        edgeway_sidecar::config::SidecarConfig::parse(&text, &key).expect("sidecar accepts it");
    }
}

#[test]
fn the_crd_reference_doc_is_generated_from_the_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/crd-reference.md");
    let committed = std::fs::read_to_string(&path).expect("docs/crd-reference.md");
    assert!(
        committed == edgeway_operator::crd_docs::markdown(),
        "docs/crd-reference.md is stale: run `cargo run -p edgeway-operator -- crd --markdown > docs/crd-reference.md`"
    );
}
