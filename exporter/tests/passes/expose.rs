//! The expose-activations pass: extra float outputs, no duplicates, errors for constants and
//! unknown tensors.

use std::collections::BTreeSet;

use exporter::graph::dump;
use exporter::passes::expose_activations;

use super::fixtures::*;

#[test]
fn expose_activations_appends_float_outputs() {
    let m = residual_model();
    let want: BTreeSet<String> = ["r", "x", "s2", "y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let e = expose_activations(&m, &want).unwrap();
    let outs: Vec<&str> = e.graph.output.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        outs,
        ["y", "r", "s2", "x"],
        "originals first, no duplicate 'y'"
    );
    assert_eq!(e.graph.node, m.graph.node);
    snapshot("expose_residual.txt", &dump(&e.graph));

    let missing: BTreeSet<String> = ["nope".to_string()].into();
    let err = expose_activations(&m, &missing).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    let constant: BTreeSet<String> = ["w1".to_string()].into();
    let err = expose_activations(&m, &constant).unwrap_err().to_string();
    assert!(err.contains("initializer"), "{err}");
}
