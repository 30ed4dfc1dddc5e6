//! The distilled ECAPA-TDNN fixture (tools/distil_ecapa.py): its node scopes are SpeechBrain's
//! (the ECAPA preset's groups match exactly) and `voxq eval` reproduces the training script's
//! own evaluation.

use crate::common;

use common::{root, s, speech, stderr, voxq};
use exporter::groups::{LayerGroups, OTHER_GROUP};

#[test]
fn ecapa_preset_groups_match_the_node_scopes() {
    let m = exporter::model::load(root().join("fixtures/models/ecapa_distil.onnx")).unwrap();
    let g = LayerGroups::resolve(&m.graph, "preset:ecapa-speechbrain").unwrap();
    let counts: Vec<(String, usize)> = g
        .groups
        .iter()
        .map(|x| (x.name.clone(), x.nodes.len()))
        .collect();
    for (name, n) in &counts {
        println!("{name}: {n} nodes");
    }
    assert!(
        g.empty.is_empty(),
        "preset groups with no node: {:?}",
        g.empty
    );
    assert!(
        g.group(OTHER_GROUP).is_none(),
        "nodes outside every preset group: {:?}",
        g.group(OTHER_GROUP).map(|x| &x.nodes)
    );
    let names: Vec<&str> = counts.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "stem",
            "se_res2block_1",
            "se_res2block_2",
            "se_res2block_3",
            "mfa",
            "asp",
            "fc"
        ]
    );
    // the three SE-Res2Blocks have the same structure, hence the same node count
    assert_eq!(counts[1].1, counts[2].1);
    assert_eq!(counts[2].1, counts[3].1);
    assert_eq!(
        counts.iter().map(|c| c.1).sum::<usize>(),
        m.graph.node.len()
    );
    let expected = [20, 249, 249, 249, 20, 130, 24];
    assert_eq!(counts.iter().map(|c| c.1).collect::<Vec<_>>(), expected);
}

#[test]
fn voxq_eval_matches_the_training_script() {
    let ev: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/models/ecapa_distil.eval.json")).unwrap(),
    )
    .unwrap();
    let want = ev["student"]["known"]["eer_percent"].as_f64().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("eval.json");
    let o = voxq(&[
        "eval",
        "--model",
        "fixtures/models/ecapa_distil.json",
        "--trials",
        "fixtures/trials/distil_known.txt",
        "--audio-root",
        s(&speech()),
        "--json",
        s(&json),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let eer = 100.0 * got["all"]["eer"].as_f64().unwrap();
    println!("voxq eval EER {eer:.3}% vs training script {want:.3}%");
    assert!(
        (eer - want).abs() <= 0.05,
        "voxq eval EER {eer:.3}% vs training script {want:.3}%"
    );
}
