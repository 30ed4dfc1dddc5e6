//! Group specs and selectors: the input is parsed as a group spec (JSON) and, line by line,
//! as `--include`/`--exclude` selectors; what parses is applied to a small graph whose node
//! names follow the CAM++ and ECAPA-TDNN exports (scoped, unscoped, unnamed, constants, Q/DQ).
//!
//! Invariants: the groups of a spec partition the graph's nodes (each node in exactly one
//! group, no empty group, spec groups that match nothing listed in `empty`); a selector prints
//! as text that parses back to the same selector; a selection is a subset of the node names.

#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use exporter::onnx::builders::{node, tensor_f32};
use exporter::groups::{node_id, select, GroupSpec, LayerGroups, Selector, OTHER_GROUP};
use libfuzzer_sys::fuzz_target;
use onnx_protobuf::GraphProto;

const NAMES: &[(&str, &str)] = &[
    ("/Transpose", "Transpose"),
    ("/Transpose_output_0_QuantizeLinear", "QuantizeLinear"),
    ("/Transpose_output_0_DequantizeLinear", "DequantizeLinear"),
    ("/head/conv1/Conv", "Conv"),
    ("/head/bn1/BatchNormalization", "BatchNormalization"),
    ("/head/Relu", "Relu"),
    ("/xvector/tdnn/linear/Conv", "Conv"),
    ("/xvector/block1/tdnnd1/cam_layer/linear_local/Conv", "Conv"),
    ("/xvector/block1/tdnnd1/Concat", "Concat"),
    ("/xvector/transit1/linear/Conv", "Conv"),
    ("/xvector/block2/tdnnd3/nonlinear1/relu/Relu", "Relu"),
    ("/xvector/transit2/linear/Conv", "Conv"),
    ("/xvector/block3/tdnnd16/cam_layer/Sigmoid", "Sigmoid"),
    ("/xvector/transit3/linear/Conv", "Conv"),
    ("/xvector/out_nonlinear/relu/Relu", "Relu"),
    ("/xvector/stats/ReduceMean", "ReduceMean"),
    ("/xvector/dense/linear/Conv", "Conv"),
    ("/blocks.0/conv/conv/Conv", "Conv"),
    ("/blocks.1/res2net_block/blocks.0/conv/conv/Conv", "Conv"),
    ("/blocks.2/se_block/Sigmoid", "Sigmoid"),
    ("/blocks.3/Add", "Add"),
    ("/Concat", "Concat"),
    ("/mfa/conv/conv/Conv", "Conv"),
    ("/asp/tdnn/conv/conv/Conv", "Conv"),
    ("/asp_bn/norm/BatchNormalization", "BatchNormalization"),
    ("fc.conv.weight_DequantizeLinear", "DequantizeLinear"),
    ("/fc/conv/conv/Conv", "Conv"),
    ("/Transpose_1", "Transpose"),
    ("Constant_260", "Constant"),
    ("onnx::Add_5", "Add"),
    ("", "Relu"),
    ("", "Mul"),
    ("Relu#30", "Relu"),
    ("/Squeeze", "Squeeze"),
];

/// A chain of nodes with the names above: each reads the previous output; the weight DQ reads
/// initializers and feeds the next Conv; the Constant feeds the Add after it.
fn graph() -> &'static GraphProto {
    static G: OnceLock<GraphProto> = OnceLock::new();
    G.get_or_init(|| {
        let mut g = GraphProto::new();
        g.initializer.push(tensor_f32("w_q", &[2], &[1.0, 2.0]));
        g.initializer.push(tensor_f32("w_scale", &[], &[0.5]));
        let mut prev = "x".to_string();
        let mut pending_const: Option<String> = None;
        for (i, (name, op)) in NAMES.iter().enumerate() {
            let out = format!("t{i}");
            let mut n = match *op {
                "Constant" => {
                    pending_const = Some(out.clone());
                    node(op, &[], &[&out])
                }
                "DequantizeLinear" if name.contains("weight") => {
                    pending_const = Some(out.clone());
                    node(op, &["w_q", "w_scale"], &[&out])
                }
                _ => {
                    let mut inputs = vec![prev.as_str()];
                    let c = pending_const.take();
                    if let Some(c) = &c {
                        inputs.push(c);
                    }
                    let n = node(op, &inputs, &[&out]);
                    prev = out.clone();
                    n
                }
            };
            n.name = name.to_string();
            g.node.push(n);
        }
        g
    })
}

fn check_partition(g: &GraphProto, spec: &GroupSpec, groups: &LayerGroups) {
    let n: usize = groups.groups.iter().map(|x| x.nodes.len()).sum();
    assert_eq!(n, g.node.len(), "the groups do not partition the nodes");
    let all: BTreeSet<String> = (0..g.node.len()).map(|i| node_id(g, i)).collect();
    let mut names = BTreeSet::new();
    for grp in &groups.groups {
        assert!(!grp.nodes.is_empty(), "empty group '{}' listed", grp.name);
        assert!(
            names.insert(grp.name.as_str()),
            "group '{}' twice",
            grp.name
        );
        assert!(grp.nodes.iter().all(|x| all.contains(x)));
    }
    for rule in &spec.groups {
        let listed = groups.group(&rule.name).is_some();
        let empty = groups.empty.contains(&rule.name);
        assert!(
            listed != empty,
            "spec group '{}' is listed {listed}, empty {empty}",
            rule.name
        );
    }
    for grp in &groups.groups {
        assert!(grp.name == OTHER_GROUP || spec.groups.iter().any(|r| r.name == grp.name));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let g = graph();
    let groups = match GroupSpec::from_json("fuzz.json", text) {
        Ok(spec) => {
            let groups = LayerGroups::from_spec(g, &spec);
            check_partition(g, &spec, &groups);
            groups
        }
        Err(_) => LayerGroups::from_depth(g, 2),
    };

    let all: BTreeSet<String> = (0..g.node.len()).map(|i| node_id(g, i)).collect();
    let mut selectors = Vec::new();
    for line in text.lines().take(64) {
        let Ok(sel) = Selector::parse(line) else {
            continue;
        };
        let shown = sel.to_string();
        let again = Selector::parse(&shown)
            .unwrap_or_else(|e| panic!("selector '{shown}' does not parse back: {e}"));
        assert_eq!(
            again.to_string(),
            shown,
            "selector changed through its text form"
        );
        if let Ok(picked) = select(g, &groups, std::slice::from_ref(&sel), &[]) {
            assert!(picked.is_subset(&all));
        }
        selectors.push(sel);
    }
    let (include, exclude) = selectors.split_at(selectors.len() / 2);
    if let Ok(picked) = select(g, &groups, include, exclude) {
        assert!(picked.is_subset(&all));
    }
});
