//! Shared fixtures of the pass tests: node and attribute builders, the residual model (two
//! quantizable Convs, a residual Add, a small Conv and float ops), a calibration table, the
//! quantize shortcut, graph checks and the snapshot comparison.

use std::collections::BTreeSet;
use std::path::PathBuf;

use calibration::{CalibrationTable, TensorRange};
use exporter::model::elem;
use exporter::onnx::builders::{model, node, tensor_f32, value_info};
use exporter::passes::{insert_qdq, InsertQdqReport};
use exporter::policy::{plan, QdqPlan, QuantPolicy, Target};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

use super::support::floats;

pub(crate) fn named(mut n: NodeProto, name: &str) -> NodeProto {
    n.name = name.into();
    n
}

pub(crate) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: v,
        ..Default::default()
    }
}

pub(crate) fn conv(name: &str, x: &str, w: &str, b: &str, y: &str, k: i64) -> NodeProto {
    let mut n = named(node("Conv", &[x, w, b], &[y]), name);
    n.attribute.push(ints("kernel_shape", &[k]));
    n.attribute.push(ints("pads", &[k / 2, k / 2]));
    n
}

pub(crate) fn weight(g: &mut GraphProto, name: &str, dims: &[i64], seed: u32) {
    let n: i64 = dims.iter().product();
    g.initializer
        .push(tensor_f32(name, dims, &floats(n as usize, seed)));
}

/// x[1,16,10] → conv1 (16→32, k3) → relu1 → r → conv2 (32→32, k3) → c;
/// add(c, r) → relu2 → conv_small (32→8, k1) → transpose → LayerNormalization → Softmax → y.
pub(crate) fn residual_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "residual".into();
    g.input.push(value_info("x", elem::FLOAT, &[1, 16, 10]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 10, 8]));
    weight(&mut g, "w1", &[32, 16, 3], 1);
    weight(&mut g, "b1", &[32], 2);
    weight(&mut g, "w2", &[32, 32, 3], 3);
    weight(&mut g, "b2", &[32], 4);
    weight(&mut g, "w3", &[8, 32, 1], 5);
    weight(&mut g, "b3", &[8], 6);
    weight(&mut g, "ln_scale", &[8], 7);
    weight(&mut g, "ln_bias", &[8], 8);
    g.node.push(conv("conv1", "x", "w1", "b1", "a", 3));
    g.node.push(named(node("Relu", &["a"], &["r"]), "relu1"));
    g.node.push(conv("conv2", "r", "w2", "b2", "c", 3));
    g.node.push(named(node("Add", &["c", "r"], &["s"]), "add"));
    g.node.push(named(node("Relu", &["s"], &["s2"]), "relu2"));
    g.node
        .push(conv("conv_small", "s2", "w3", "b3", "small", 1));
    let mut t = named(node("Transpose", &["small"], &["t"]), "transpose");
    t.attribute.push(ints("perm", &[0, 2, 1]));
    g.node.push(t);
    let mut ln = named(
        node("LayerNormalization", &["t", "ln_scale", "ln_bias"], &["ln"]),
        "layernorm",
    );
    ln.attribute.push(int("axis", -1));
    g.node.push(ln);
    let mut sm = named(node("Softmax", &["ln"], &["y"]), "softmax");
    sm.attribute.push(int("axis", -1));
    g.node.push(sm);
    model(g, 17)
}

pub(crate) fn table(tensors: &BTreeSet<String>, scale: f32) -> CalibrationTable {
    CalibrationTable {
        format: "voxq-calibration/1".into(),
        method: "max".into(),
        tensors: tensors
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    TensorRange {
                        amax: scale * 127.0,
                        scale,
                        fallback: None,
                        stats: None,
                    },
                )
            })
            .collect(),
    }
}

pub(crate) fn policy(target: Target) -> QuantPolicy {
    QuantPolicy {
        target,
        ..QuantPolicy::default()
    }
}

pub(crate) fn quantize(m: &ModelProto, p: &QuantPolicy) -> (QdqPlan, ModelProto, InsertQdqReport) {
    let pl = plan(m, p).unwrap();
    let (q, r) = insert_qdq(m, &pl, &table(&pl.activations, 0.02)).unwrap();
    (pl, q, r)
}

pub(crate) fn node_by_name<'a>(m: &'a ModelProto, name: &str) -> &'a NodeProto {
    m.graph
        .node
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

pub(crate) fn count_op(m: &ModelProto, op: &str) -> usize {
    m.graph.node.iter().filter(|n| n.op_type == op).count()
}

pub(crate) fn init<'a>(m: &'a ModelProto, name: &str) -> Option<&'a TensorProto> {
    m.graph.initializer.iter().find(|t| t.name == name)
}

/// Every node input is a graph input, an initializer or the output of an earlier node.
pub(crate) fn assert_topological(m: &ModelProto) {
    let g = &m.graph;
    let mut known: BTreeSet<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
    known.extend(g.initializer.iter().map(|t| t.name.as_str()));
    for n in &g.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            assert!(
                known.contains(i.as_str()),
                "node {} reads {i} before it is produced",
                n.name
            );
        }
        known.extend(n.output.iter().map(String::as_str));
    }
    for o in &g.output {
        assert!(
            known.contains(o.name.as_str()),
            "output {} not produced",
            o.name
        );
    }
}

/// Compares `text` with `tests/snapshots/{name}`; `UPDATE_SNAPSHOTS=1` (or a missing file
/// under that variable) rewrites it.
pub(crate) fn snapshot(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)",
            path.display()
        )
    });
    if want != text {
        let diff: Vec<String> = want
            .lines()
            .zip(text.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  want {a}\n  got  {b}", i + 1))
            .collect();
        panic!(
            "{} differs ({} vs {} lines):\n{}\n(UPDATE_SNAPSHOTS=1 rewrites it)",
            path.display(),
            want.lines().count(),
            text.lines().count(),
            diff.join("\n")
        );
    }
}
