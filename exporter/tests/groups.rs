//! Layer groups: depth and spec builders, spec errors, presets on the real models, selection.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use exporter::groups::{
    node_id, preset, preset_names, select, GroupSpec, LayerGroups, Selector, OTHER_GROUP,
    ROOT_GROUP,
};
use exporter::onnx::builders::node;
use exporter::ExportError;
use onnx_protobuf::{GraphProto, NodeProto};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn named(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    let mut n = node(op, inputs, outputs);
    n.name = name.into();
    n
}

/// A graph named like a TorchScript export: scoped nodes, a root node, an unscoped Constant.
fn scoped_graph() -> GraphProto {
    let mut g = GraphProto::new();
    g.node
        .push(named("Transpose", "/Transpose", &["x"], &["t"]));
    g.node.push(named(
        "Conv",
        "/xvector/block1/tdnnd1/Conv",
        &["t", "w1"],
        &["a"],
    ));
    g.node.push(named("Constant", "Constant_7", &[], &["k"]));
    g.node
        .push(named("Relu", "/xvector/block1/tdnnd2/Relu", &["a"], &["b"]));
    g.node
        .push(named("Mul", "/xvector/block2/Mul", &["b", "k"], &["c"]));
    g.node
        .push(named("Conv", "/head/conv1/Conv", &["c", "w2"], &["d"]));
    g.node.push(node("Identity", &["d"], &["y"]));
    g
}

fn names(groups: &LayerGroups) -> Vec<(&str, usize)> {
    groups
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.nodes.len()))
        .collect()
}

/// Every node of `graph` appears in exactly one group, and groups list nodes in graph order.
fn assert_partition(graph: &GraphProto, groups: &LayerGroups) {
    let mut seen = BTreeSet::new();
    let order: Vec<String> = (0..graph.node.len()).map(|i| node_id(graph, i)).collect();
    for g in &groups.groups {
        let pos: Vec<usize> = g
            .nodes
            .iter()
            .map(|n| {
                order
                    .iter()
                    .position(|o| o == n)
                    .expect("node of the graph")
            })
            .collect();
        assert!(
            pos.windows(2).all(|w| w[0] < w[1]),
            "{} out of order",
            g.name
        );
        for n in &g.nodes {
            assert!(seen.insert(n.clone()), "{n} in two groups");
        }
    }
    assert_eq!(seen.len(), graph.node.len());
}

#[test]
fn depth_groups_follow_name_scopes() {
    let g = scoped_graph();
    let d2 = LayerGroups::from_depth(&g, 2);
    assert_partition(&g, &d2);
    assert_eq!(d2.source, "depth=2");
    assert_eq!(
        names(&d2),
        [
            (ROOT_GROUP, 2),
            ("xvector/block1", 2),
            ("xvector/block2", 2),
            ("head/conv1", 1)
        ]
    );
    // The unscoped Constant joins its consumer's group; the unnamed Identity gets an id.
    let b2 = d2.group("xvector/block2").expect("group");
    assert_eq!(b2.nodes, ["Constant_7", "/xvector/block2/Mul"]);
    assert_eq!(
        d2.group(ROOT_GROUP).expect("root").nodes,
        ["/Transpose", "Identity#6"]
    );

    let d1 = LayerGroups::from_depth(&g, 1);
    assert_eq!(names(&d1), [(ROOT_GROUP, 2), ("xvector", 4), ("head", 1)]);
    let d9 = LayerGroups::from_depth(&g, 9);
    assert_eq!(d9.groups.len(), 5);
    assert!(d9.group("xvector/block1/tdnnd1").is_some());
    let d0 = LayerGroups::from_depth(&g, 0);
    assert_eq!(names(&d0), [(ROOT_GROUP, 7)]);
}

const SPEC: &str = r#"{
  "name": "test",
  "description": "first match wins",
  "groups": [
    {"name": "block1", "patterns": ["^/xvector/block1/"]},
    {"name": "convs", "description": "every other Conv", "patterns": ["/Conv$", "^nothing$"]},
    {"name": "never", "patterns": ["^/nope/"]},
    {"name": "block2", "patterns": ["^/xvector/block2/"]}
  ]
}"#;

#[test]
fn spec_groups_first_match_wins() -> Result<()> {
    let g = scoped_graph();
    let spec = GroupSpec::from_json("spec.json", SPEC)?;
    assert_eq!(spec.name, "test");
    let groups = LayerGroups::from_spec(&g, &spec);
    assert_partition(&g, &groups);
    assert_eq!(groups.source, "spec.json");
    assert_eq!(
        names(&groups),
        [("block1", 2), ("convs", 1), ("block2", 2), (OTHER_GROUP, 2)]
    );
    assert_eq!(groups.empty, ["never"]);
    assert_eq!(
        groups.group(OTHER_GROUP).expect("other").nodes,
        ["/Transpose", "Identity#6"]
    );
    Ok(())
}

fn spec_error(text: &str) -> String {
    match GroupSpec::from_json("dir/my_spec.json", text) {
        Ok(_) => panic!("spec should be refused: {text}"),
        Err(e) => {
            assert!(matches!(e, ExportError::GroupSpec { .. }));
            let msg = e.to_string();
            assert!(msg.starts_with("dir/my_spec.json: "), "{msg}");
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            msg
        }
    }
}

#[test]
fn spec_errors_name_the_file() {
    let msg = spec_error("{ not json");
    assert!(msg.contains("not a valid group spec"), "{msg}");
    let msg = spec_error(r#"{"name": "x", "groups": []}"#);
    assert!(msg.contains("no groups"), "{msg}");
    let msg = spec_error(r#"{"groups": [{"name": "a", "patterns": ["("]}]}"#);
    assert!(
        msg.contains("group 'a': bad regex '(': unclosed group"),
        "{msg}"
    );
    let msg = spec_error(
        r#"{"groups": [{"name": "a", "patterns": ["x"]}, {"name": "a", "patterns": ["y"]}]}"#,
    );
    assert!(msg.contains("group 'a' is defined twice"), "{msg}");
    let msg = spec_error(r#"{"groups": [{"name": "a", "pattern": ["x"]}]}"#);
    assert!(msg.contains("unknown field `pattern`"), "{msg}");
    let msg = spec_error(r#"{"groups": [{"name": "a", "patterns": []}]}"#);
    assert!(msg.contains("group 'a' has no patterns"), "{msg}");
    let msg = spec_error(r#"{"groups": [{"name": "(other)", "patterns": ["x"]}]}"#);
    assert!(msg.contains("reserved"), "{msg}");
    let msg = spec_error(r#"{"groups": [{"name": " ", "patterns": ["x"]}]}"#);
    assert!(msg.contains("empty name"), "{msg}");
}

#[test]
fn load_and_resolve() -> Result<()> {
    let g = scoped_graph();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("groups.json");
    std::fs::write(&path, SPEC)?;
    let from_file = LayerGroups::resolve(&g, &path.display().to_string())?;
    assert_eq!(from_file.groups.len(), 4);
    assert_eq!(from_file.source, path.display().to_string());

    let d = LayerGroups::resolve(&g, "depth=1")?;
    assert_eq!(d, LayerGroups::from_depth(&g, 1));
    let p = LayerGroups::resolve(&g, "preset:campplus")?;
    assert_eq!(p.source, "preset:campplus");

    let missing = dir.path().join("missing.json");
    let e = LayerGroups::resolve(&g, &missing.display().to_string())
        .expect_err("missing file")
        .to_string();
    assert!(
        e.contains("missing.json: no such group spec file") && e.contains("depth=N"),
        "{e}"
    );
    let e = GroupSpec::load(&missing)
        .expect_err("missing file")
        .to_string();
    assert!(e.contains("missing.json: cannot read group spec"), "{e}");
    let e = LayerGroups::resolve(&g, "preset:nope")
        .expect_err("unknown preset")
        .to_string();
    assert!(
        e.contains("unknown preset 'nope'") && e.contains("campplus"),
        "{e}"
    );
    for bad in ["depth=0", "depth=x", "depth=-1"] {
        let e = LayerGroups::resolve(&g, bad).expect_err(bad).to_string();
        assert!(e.contains("not a positive whole number"), "{e}");
    }
    Ok(())
}

#[test]
fn selectors_parse() -> Result<()> {
    assert!(matches!(Selector::parse("block1")?, Selector::Group(g) if g == "block1"));
    assert!(matches!(Selector::parse("group:fc")?, Selector::Group(g) if g == "fc"));
    assert!(matches!(Selector::parse("op:Conv")?, Selector::Op(o) if o == "Conv"));
    let n: Selector = "node:^/head/".parse()?;
    assert_eq!(n.to_string(), "node:^/head/");
    let e = Selector::parse("node:(")
        .expect_err("bad regex")
        .to_string();
    assert!(
        e.contains("selector 'node:('") && e.contains("unclosed group"),
        "{e}"
    );
    let e = Selector::parse("layer:x")
        .expect_err("bad kind")
        .to_string();
    assert!(e.contains("unknown kind 'layer'"), "{e}");
    assert!(Selector::parse("op:").is_err());
    assert!(Selector::parse("").is_err());
    Ok(())
}

fn sel(items: &[&str]) -> Vec<Selector> {
    items
        .iter()
        .map(|s| Selector::parse(s).expect("selector"))
        .collect()
}

#[test]
fn select_includes_then_excludes() -> Result<()> {
    let g = scoped_graph();
    let groups = LayerGroups::from_spec(&g, &GroupSpec::from_json("spec.json", SPEC)?);
    let all = select(&g, &groups, &[], &[])?;
    assert_eq!(all.len(), g.node.len());
    assert!(all.contains("Identity#6"));

    let s = select(&g, &groups, &sel(&["block1", "op:conv"]), &[])?;
    let want: BTreeSet<String> = [
        "/xvector/block1/tdnnd1/Conv",
        "/xvector/block1/tdnnd2/Relu",
        "/head/conv1/Conv",
    ]
    .map(String::from)
    .into();
    assert_eq!(s, want);

    let s = select(
        &g,
        &groups,
        &sel(&["group:block1", "group:block2"]),
        &sel(&["op:Relu", "node:^Constant_"]),
    )?;
    let want: BTreeSet<String> = ["/xvector/block1/tdnnd1/Conv", "/xvector/block2/Mul"]
        .map(String::from)
        .into();
    assert_eq!(s, want);

    let s = select(&g, &groups, &[], &sel(&["node:/xvector/"]))?;
    assert_eq!(s.len(), 4);

    let e = select(&g, &groups, &sel(&["blok1"]), &[])
        .expect_err("unknown group")
        .to_string();
    assert!(e.contains("unknown group 'blok1'"), "{e}");
    assert!(e.contains("block1, convs, block2, (other)"), "{e}");
    let e = select(&g, &groups, &[], &sel(&["never"]))
        .expect_err("empty group")
        .to_string();
    assert!(e.contains("group 'never' matches no node"), "{e}");
    Ok(())
}

#[test]
fn presets_cover_the_real_models() -> Result<()> {
    assert_eq!(
        preset_names(),
        ["ecapa-speechbrain", "campplus", "whisper-tiny", "smollm2"]
    );
    for (preset_name, model) in [
        ("ecapa-speechbrain", "ecapa_auralis.onnx"),
        // ONNX Runtime's QDQ model: weight DQs are named after the weights, not the scopes.
        ("ecapa-speechbrain", "ecapa_auralis.ort_qdq.onnx"),
        ("campplus", "campplus.onnx"),
    ] {
        let m = exporter::model::load(repo_root().join("fixtures/models").join(model))?;
        let graph = m.graph.as_ref().expect("graph");
        let spec = preset(preset_name).expect("preset");
        let groups = LayerGroups::from_spec(graph, &spec);
        assert_partition(graph, &groups);
        println!("{preset_name} on {model} ({} nodes):", graph.node.len());
        for g in &groups.groups {
            let convs = g
                .nodes
                .iter()
                .filter(|n| {
                    graph
                        .node
                        .iter()
                        .any(|x| &x.name == *n && x.op_type == "Conv")
                })
                .count();
            println!(
                "  {:16} {:5} nodes, {:3} Conv",
                g.name,
                g.nodes.len(),
                convs
            );
        }
        if !groups.empty.is_empty() {
            println!("  empty: {}", groups.empty.join(", "));
        }
        assert!(
            groups.group(OTHER_GROUP).is_none(),
            "{preset_name}: unmatched nodes {:?}",
            groups
                .group(OTHER_GROUP)
                .map(|g| &g.nodes[..g.nodes.len().min(10)])
        );
        let total: usize = groups.groups.iter().map(|g| g.nodes.len()).sum();
        assert_eq!(total, graph.node.len());
        match preset_name {
            "ecapa-speechbrain" => {
                // channels [512, 512, 512]: one SE-Res2Block.
                assert_eq!(
                    groups.names(),
                    ["stem", "se_res2block_1", "mfa", "asp", "fc"]
                );
                assert_eq!(groups.empty, ["se_res2block_2", "se_res2block_3"]);
                let asp = groups.group("asp").expect("asp");
                assert!(asp.nodes.iter().any(|n| n.starts_with("/asp_bn/")));
                assert!(asp.nodes.iter().any(|n| n == "Constant_260"));
                let fc = groups.group("fc").expect("fc");
                assert!(fc.nodes.iter().any(|n| n == "/If"));
            }
            _ => {
                assert_eq!(
                    groups.names(),
                    [
                        "fcm", "tdnn", "block1", "transit1", "block2", "transit2", "block3",
                        "transit3", "pooling", "dense"
                    ]
                );
                assert!(groups.empty.is_empty());
            }
        }
        // Depth groups partition the real graph too.
        let d = LayerGroups::from_depth(graph, 2);
        assert_partition(graph, &d);
    }
    Ok(())
}

/// The Whisper and SmolLM2 presets on the tiny test fixtures (same exporters, same node names
/// as the real tiny.en and SmolLM2-135M exports, fewer blocks): every node the quantizer can
/// quantize (a weighted node with a constant weight) falls in a named group, with the expected
/// counts per group; the blocks the tiny models lack are listed as empty.
#[test]
fn whisper_and_smollm2_presets_cover_every_quantizable_node() -> Result<()> {
    use exporter::policy::{plan, QuantMode, QuantPolicy};
    let weight_only = QuantPolicy {
        mode: QuantMode::WeightOnly,
        min_channels: 0,
        ..QuantPolicy::default()
    };
    let attn = |i: usize| {
        [
            (format!("block{i}.attn"), 4usize),
            (format!("block{i}.mlp"), 3),
        ]
    };
    let dec = |i: usize| {
        [
            (format!("dec.block{i}.self_attn"), 4usize),
            (format!("dec.block{i}.cross_attn"), 4),
            (format!("dec.block{i}.mlp"), 2),
        ]
    };
    // (preset, fixture file, quantizable nodes per group in graph order, empty groups)
    type Case = (&'static str, &'static str, Vec<(String, usize)>, usize);
    let cases: Vec<Case> = vec![
        (
            "whisper-tiny",
            "fixtures/whisper-tiny-test/encoder.onnx",
            vec![
                ("enc.conv".into(), 2),
                ("enc.block0".into(), 6),
                ("enc.block1".into(), 6),
            ],
            // enc.block2, enc.block3 and every decoder group
            2 + 4 * 3 + 1,
        ),
        (
            "whisper-tiny",
            "fixtures/whisper-tiny-test/decoder.onnx",
            dec(0)
                .into_iter()
                .chain(dec(1))
                .chain([("dec.embed_out".into(), 1)])
                .collect(),
            1 + 4 + 2 * 3,
        ),
        (
            "smollm2",
            "fixtures/audio-llm-tiny-test/decoder.onnx",
            attn(0)
                .into_iter()
                .chain(attn(1))
                .chain([("lm_head".into(), 1)])
                .collect(),
            2 * 28,
        ),
    ];
    for (preset_name, file, want, empty) in cases {
        let m = exporter::model::load(repo_root().join(file))?;
        let graph = m.graph.as_ref().expect("graph");
        let groups = LayerGroups::from_spec(graph, &preset(preset_name).expect("preset"));
        assert_partition(graph, &groups);
        let of = groups.group_of_nodes();
        let p = plan(&m, &weight_only)?;
        assert!(p.skipped.iter().all(|s| !s.reason.contains("selection")));
        let mut got: Vec<(String, usize)> = Vec::new();
        for q in &p.quantized {
            let g = of.get(q.node.as_str()).copied().unwrap_or("(none)");
            assert_ne!(g, OTHER_GROUP, "{file}: {} is in no group", q.node);
            match got.last_mut() {
                Some((name, n)) if name == g => *n += 1,
                _ => got.push((g.to_string(), 1)),
            }
        }
        assert_eq!(got, want, "{preset_name} on {file}");
        assert_eq!(groups.empty.len(), empty, "{file}: {:?}", groups.empty);
    }
    Ok(())
}
