//! ONNX model bytes → `ModelProto` → the exporter's graph views → save → load again.
//!
//! Any bytes may fail to load (that is the parser's job); a model that loads must be usable by
//! every read-only view the exporter offers (graph index, text dump, summary, layer groups,
//! inventory, QDQ check, size report, the activation-exposing pass), must serialise, and must
//! load back as the same model, both from memory and through `save` with external data.

#![no_main]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use exporter::graph::{dump, GraphIndex};
use exporter::groups::LayerGroups;
use exporter::inspect::{inventory, qdq_report};
use exporter::model::{self, same_model, SaveOptions};
use exporter::passes::expose_activations;
use exporter::size::deployable_size;
use libfuzzer_sys::fuzz_target;

/// A scratch folder for `save`, on tmpfs when there is one (the atomic writer fsyncs).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("voxq-fuzz-onnx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(m) = model::load_bytes("fuzz.onnx", data) else {
        return;
    };
    let g = m.graph.as_ref().expect("a loaded model has a graph");

    // Graph index: every non-empty node output has a producer, every input its consumers.
    let ix = GraphIndex::new(g);
    for (i, n) in g.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            assert!(
                ix.producer(o).is_some(),
                "output '{o}' of node {i} has no producer"
            );
        }
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            assert!(
                ix.consumers(x).contains(&i),
                "node {i} is not a consumer of '{x}'"
            );
        }
    }
    let text = dump(g);
    assert!(text.lines().count() >= g.node.len());
    let s = model::summary(&m);
    assert_eq!(s.node_count, g.node.len());

    // Layer groups partition the nodes; the inventory counts each node once.
    for depth in [1, 2] {
        let groups = LayerGroups::from_depth(g, depth);
        let n: usize = groups.groups.iter().map(|x| x.nodes.len()).sum();
        assert_eq!(
            n,
            g.node.len(),
            "groups at depth {depth} do not partition the nodes"
        );
        let inv = inventory(&m, &groups);
        assert_eq!(inv.total.nodes, g.node.len());
        let _ = inv.markdown();
    }
    let _ = qdq_report(&m).markdown(20);
    let _ = deployable_size(&m, Some(data.len() as u64)).markdown();

    // The calibration pass: expose every float node output (errors are allowed: a tensor may
    // be declared with another type); what it returns must still serialise and load.
    let outs: BTreeSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter())
        .filter(|o| !o.is_empty())
        .take(256)
        .cloned()
        .collect();
    if let Ok(exposed) = expose_activations(&m, &outs) {
        let bytes = model::to_bytes(&exposed).expect("the exposed model serialises");
        model::load_bytes("exposed.onnx", &bytes).expect("the exposed model loads");
    }

    // Save to bytes and load again: the same model.
    let bytes = model::to_bytes(&m).expect("a loaded model serialises");
    let again = model::load_bytes("resaved.onnx", &bytes).expect("a saved model loads");
    assert!(
        same_model(&m, &again),
        "bytes → load → save → load changed the model"
    );

    // Save with external data (every tensor of 16 bytes or more) and load from the file; only
    // models with such a tensor, so that the file round trip is not paid for nothing.
    if !g.initializer.iter().any(|t| t.raw_data.len() >= 16)
        && !g
            .node
            .iter()
            .any(|n| n.attribute.iter().any(|a| a.t.raw_data.len() >= 16))
    {
        return;
    }
    let path = scratch().join("model.onnx");
    let opts = SaveOptions {
        alignment: 64,
        include_attribute_tensors: true,
        ..SaveOptions::external(16)
    };
    model::save(&m, &path, &opts).expect("a loaded model saves with external data");
    let loaded = model::load(&path).expect("a model saved with external data loads");
    assert!(
        same_model(&m, &loaded),
        "save with external data → load changed the model"
    );
});
