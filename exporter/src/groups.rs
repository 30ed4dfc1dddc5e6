//! Layer groups: named sets of nodes from name scopes at a depth, a spec file, or a preset.
//!
//! A [`LayerGroups`] partitions the nodes of a graph's main body: every node belongs to exactly
//! one [`Group`], and a group lists its nodes by name in graph order. Groups come from
//!
//! - the `torch.onnx.export` name scope of each node ([`LayerGroups::from_depth`]):
//!   `/xvector/block1/tdnnd1/Conv` has the scope `xvector/block1/tdnnd1`, and at depth 2 it
//!   belongs to `xvector/block1`; nodes without a scope go to `(root)`;
//! - a [`GroupSpec`] of name patterns ([`LayerGroups::from_spec`]): the first group with a
//!   matching regex wins, unmatched nodes go to `(other)`. Spec groups that match no node are
//!   left out of `groups` and listed in `empty`;
//! - a preset: a spec shipped with voxq as a data file ([`preset`], [`preset_names`]).
//!
//! In both builders an unscoped or unmatched node that computes only from constants joins the
//! group of its first consumer: the TorchScript exporter emits `Constant_260` with no scope, and
//! quantizers name a weight's DequantizeLinear after the weight (`fc.conv.weight_DequantizeLinear`),
//! so constants and weight Q/DQ travel with the layer that reads them. An unscoped or unmatched
//! activation QuantizeLinear/DequantizeLinear (`/Transpose_output_0_QuantizeLinear`) joins the
//! group of the node that produces its input.
//!
//! Nodes are named by [`node_id`]: the node's name, or `{op_type}#{index}` for an unnamed node.
//!
//! [`Selector`] and [`select`] turn `--include`/`--exclude` arguments (`group:NAME`,
//! `node:REGEX`, `op:TYPE`, or a bare group name) into a set of node names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use onnx_protobuf::GraphProto;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::graph::GraphIndex;
use crate::ExportError;

type Result<T> = std::result::Result<T, ExportError>;

/// The group of nodes without a name scope in [`LayerGroups::from_depth`].
pub const ROOT_GROUP: &str = "(root)";
/// The group of nodes no pattern matches in [`LayerGroups::from_spec`].
pub const OTHER_GROUP: &str = "(other)";

/// A partition of a graph's nodes into named groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerGroups {
    /// Where the groups came from: `depth=2`, `preset:campplus`, or a spec file path.
    pub source: String,
    /// Non-empty groups: spec order for a spec (then `(other)`), first appearance for a depth.
    pub groups: Vec<Group>,
    /// Spec groups that matched no node of this graph.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub empty: Vec<String>,
}

/// One named group: node names in graph order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub name: String,
    pub nodes: Vec<String>,
}

/// The name by which groups and selections refer to node `i` of `graph`: its name, or
/// `{op_type}#{i}` when it has none.
pub fn node_id(graph: &GraphProto, i: usize) -> String {
    match graph.node.get(i) {
        Some(n) if !n.name.is_empty() => n.name.clone(),
        Some(n) => format!("{}#{i}", n.op_type),
        None => format!("#{i}"),
    }
}

/// The name scope of a `torch.onnx.export` node name: `/a/b/Conv` → `["a", "b"]`. Names that
/// do not start with `/` (e.g. `Constant_260`, `onnx::Add_5`) have no scope.
pub fn scope(name: &str) -> Vec<&str> {
    let Some(rest) = name.strip_prefix('/') else {
        return Vec::new();
    };
    let mut parts: Vec<&str> = rest.split('/').collect();
    parts.pop();
    parts.retain(|p| !p.is_empty());
    parts
}

impl LayerGroups {
    /// Groups by the first `depth` components of each node's name scope; nodes without a
    /// scope go to `(root)` (depth 0 puts every node there).
    pub fn from_depth(graph: &GraphProto, depth: usize) -> LayerGroups {
        let keys: Vec<Option<String>> = graph
            .node
            .iter()
            .map(|n| {
                let s = scope(&n.name);
                let k = &s[..s.len().min(depth)];
                (!k.is_empty()).then(|| k.join("/"))
            })
            .collect();
        let keys = adopt_constants(graph, keys);
        let mut order: Vec<String> = Vec::new();
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, k) in keys.into_iter().enumerate() {
            let k = k.unwrap_or_else(|| ROOT_GROUP.to_string());
            let list = members.entry(k.clone()).or_insert_with(|| {
                order.push(k);
                Vec::new()
            });
            list.push(node_id(graph, i));
        }
        let groups = order
            .into_iter()
            .filter_map(|name| {
                let nodes = members.remove(&name)?;
                Some(Group { name, nodes })
            })
            .collect();
        LayerGroups {
            source: format!("depth={depth}"),
            groups,
            empty: Vec::new(),
        }
    }

    /// Groups by a spec: each node goes to the first spec group with a pattern matching its
    /// [`node_id`]; unmatched nodes go to `(other)`.
    pub fn from_spec(graph: &GraphProto, spec: &GroupSpec) -> LayerGroups {
        let keys: Vec<Option<usize>> = (0..graph.node.len())
            .map(|i| {
                let id = node_id(graph, i);
                spec.groups
                    .iter()
                    .position(|g| g.patterns.iter().any(|re| re.is_match(&id)))
            })
            .collect();
        let keys = adopt_constants(graph, keys);
        let mut lists: Vec<Vec<String>> = vec![Vec::new(); spec.groups.len()];
        let mut other = Vec::new();
        for (i, k) in keys.into_iter().enumerate() {
            match k.and_then(|k| lists.get_mut(k)) {
                Some(list) => list.push(node_id(graph, i)),
                None => other.push(node_id(graph, i)),
            }
        }
        let mut groups = Vec::new();
        let mut empty = Vec::new();
        for (rule, nodes) in spec.groups.iter().zip(lists) {
            if nodes.is_empty() {
                empty.push(rule.name.clone());
            } else {
                groups.push(Group {
                    name: rule.name.clone(),
                    nodes,
                });
            }
        }
        if !other.is_empty() {
            groups.push(Group {
                name: OTHER_GROUP.to_string(),
                nodes: other,
            });
        }
        LayerGroups {
            source: spec.source.clone(),
            groups,
            empty,
        }
    }

    /// Groups from a CLI argument: `preset:NAME`, `depth=N`, or the path of a spec file.
    pub fn resolve(graph: &GraphProto, arg: &str) -> Result<LayerGroups> {
        if let Some(name) = arg.strip_prefix("preset:") {
            let spec = preset(name).ok_or_else(|| ExportError::GroupSpec {
                path: arg.into(),
                reason: format!(
                    "unknown preset '{name}' (presets: {})",
                    preset_names().join(", ")
                ),
            })?;
            return Ok(LayerGroups::from_spec(graph, &spec));
        }
        if let Some(n) = arg.strip_prefix("depth=") {
            let depth = n
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&d| d > 0)
                .ok_or_else(|| ExportError::GroupSpec {
                    path: arg.into(),
                    reason: format!("depth '{n}' is not a positive whole number"),
                })?;
            return Ok(LayerGroups::from_depth(graph, depth));
        }
        if !Path::new(arg).exists() {
            return Err(ExportError::GroupSpec {
                path: arg.into(),
                reason: format!(
                    "no such group spec file (groups are preset:NAME with NAME one of {}, depth=N, or a spec file)",
                    preset_names().join(", ")
                ),
            });
        }
        let spec = GroupSpec::load(arg)?;
        Ok(LayerGroups::from_spec(graph, &spec))
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Group names in order.
    pub fn names(&self) -> Vec<&str> {
        self.groups.iter().map(|g| g.name.as_str()).collect()
    }

    /// Node name → group name.
    pub fn group_of_nodes(&self) -> BTreeMap<&str, &str> {
        self.groups
            .iter()
            .flat_map(|g| g.nodes.iter().map(|n| (n.as_str(), g.name.as_str())))
            .collect()
    }
}

/// Gives each ungrouped node that computes only from constants (a `Constant`, or a weight's
/// QuantizeLinear/DequantizeLinear/Cast on initializers) the group of its first consumer, then
/// each ungrouped activation QuantizeLinear/DequantizeLinear the group of the node producing
/// its input. Producers come before consumers in a valid ONNX graph, so a reverse walk
/// settles weight chains (weight → Q → DQ → Conv) and a forward walk activation chains
/// (Transpose → Q → DQ) in one pass each.
fn adopt_constants<K: Clone>(graph: &GraphProto, mut keys: Vec<Option<K>>) -> Vec<Option<K>> {
    let ix = GraphIndex::new(graph);
    let mut constant: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut fed = vec![false; graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        if n.input
            .iter()
            .filter(|x| !x.is_empty())
            .all(|x| constant.contains(x.as_str()))
        {
            fed[i] = true;
            constant.extend(n.output.iter().map(String::as_str));
        }
    }
    for i in (0..keys.len()).rev() {
        if keys[i].is_some() || !fed[i] {
            continue;
        }
        let first = graph.node[i]
            .output
            .iter()
            .filter(|o| !o.is_empty())
            .filter_map(|o| ix.consumers(o).first().copied())
            .min();
        if let Some(c) = first {
            keys[i] = keys.get(c).cloned().flatten();
        }
    }
    for i in 0..keys.len() {
        let n = &graph.node[i];
        if keys[i].is_some() || !matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear")
        {
            continue;
        }
        if let Some(p) = n.input.first().and_then(|x| ix.producer(x)) {
            keys[i] = keys.get(p).cloned().flatten();
        }
    }
    keys
}

// ---------------------------------------------------------------------------------------------
// Specs and presets

/// A group spec: named groups of node-name regexes, first match wins.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The spec's own name (`"name"` in the file).
    pub name: String,
    /// Where it came from (a file path or `preset:NAME`), for [`LayerGroups::source`].
    pub source: String,
    pub groups: Vec<GroupRule>,
}

/// One group of a spec.
#[derive(Debug, Clone)]
pub struct GroupRule {
    pub name: String,
    pub patterns: Vec<Regex>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    patterns: Vec<String>,
}

impl GroupSpec {
    /// Parses a spec from JSON text; `path` names the source in errors.
    ///
    /// `{"name": "...", "groups": [{"name": "stem", "patterns": ["^/blocks\\.0/"]}, ...]}`;
    /// optional `"description"` fields are allowed at both levels, other fields are errors.
    pub fn from_json(path: impl AsRef<Path>, text: &str) -> Result<GroupSpec> {
        let path = path.as_ref();
        let err = |reason: String| ExportError::GroupSpec {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawSpec =
            serde_json::from_str(text).map_err(|e| err(format!("not a valid group spec: {e}")))?;
        if raw.groups.is_empty() {
            return Err(err("the spec has no groups".into()));
        }
        let mut seen = BTreeSet::new();
        let mut groups = Vec::with_capacity(raw.groups.len());
        for g in raw.groups {
            let name = g.name.trim().to_string();
            if name.is_empty() {
                return Err(err("a group has an empty name".into()));
            }
            if name == ROOT_GROUP || name == OTHER_GROUP {
                return Err(err(format!("group name '{name}' is reserved")));
            }
            if name.contains(':') {
                return Err(err(format!(
                    "group name '{name}' contains ':', which selectors use"
                )));
            }
            if !seen.insert(name.clone()) {
                return Err(err(format!("group '{name}' is defined twice")));
            }
            if g.patterns.is_empty() {
                return Err(err(format!("group '{name}' has no patterns")));
            }
            let mut patterns = Vec::with_capacity(g.patterns.len());
            for p in &g.patterns {
                let re = compile_pattern(p).map_err(|e| {
                    err(format!(
                        "group '{name}': bad regex '{p}': {}",
                        regex_error_line(&e)
                    ))
                })?;
                patterns.push(re);
            }
            groups.push(GroupRule { name, patterns });
        }
        Ok(GroupSpec {
            name: raw.name,
            source: path.display().to_string(),
            groups,
        })
    }

    /// Reads and parses a spec file.
    pub fn load(path: impl AsRef<Path>) -> Result<GroupSpec> {
        let path = path.as_ref();
        let text = crate::textfile::read_text(path, "a group spec").map_err(|e| {
            ExportError::GroupSpec {
                path: path.to_path_buf(),
                reason: format!("cannot read group spec: {e}"),
            }
        })?;
        GroupSpec::from_json(path, &text)
    }
}

/// The most memory a node-name pattern may compile to. Patterns for node names are short
/// (`^/blocks\.1/`, `Conv$`): 1 MiB is hundreds of times what they need, while a hostile
/// `.{1000}{10}` would otherwise build regex's default 10 MiB programs (seconds each) before
/// being refused.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a group-spec or selector pattern within [`PATTERN_SIZE_LIMIT`].
fn compile_pattern(p: &str) -> std::result::Result<Regex, regex::Error> {
    regex::RegexBuilder::new(p)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

/// A regex error on one line (regex's syntax errors span several lines).
fn regex_error_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_string))
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

const PRESETS: &[(&str, &str)] = &[
    (
        "ecapa-speechbrain",
        include_str!("../presets/ecapa-speechbrain.json"),
    ),
    ("campplus", include_str!("../presets/campplus.json")),
    ("whisper-tiny", include_str!("../presets/whisper-tiny.json")),
    ("smollm2", include_str!("../presets/smollm2.json")),
];

/// The preset group spec called `name` (data files under `exporter/presets/`).
pub fn preset(name: &str) -> Option<GroupSpec> {
    let (_, text) = PRESETS.iter().find(|(n, _)| *n == name)?;
    GroupSpec::from_json(format!("preset:{name}"), text).ok()
}

/// Names of the presets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

// ---------------------------------------------------------------------------------------------
// Selection

/// One `--include`/`--exclude` item.
#[derive(Debug, Clone)]
pub enum Selector {
    /// `group:NAME` or a bare `NAME`: every node of the group.
    Group(String),
    /// `node:REGEX`: nodes whose name matches.
    Node(Regex),
    /// `op:TYPE`: nodes of that op type (ASCII case-insensitive).
    Op(String),
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector> {
        let s = s.trim();
        let bad = |reason: String| ExportError::Policy(format!("selector '{s}': {reason}"));
        let (kind, value) = match s.split_once(':') {
            Some((k @ ("group" | "node" | "op"), v)) => (k, v),
            Some((k, _)) => {
                return Err(bad(format!(
                    "unknown kind '{k}' (use group:NAME, node:REGEX or op:TYPE)"
                )))
            }
            None => ("group", s),
        };
        if value.is_empty() {
            return Err(bad("empty value".into()));
        }
        Ok(match kind {
            "node" => Selector::Node(
                compile_pattern(value)
                    .map_err(|e| bad(format!("bad regex: {}", regex_error_line(&e))))?,
            ),
            "op" => Selector::Op(value.to_string()),
            _ => Selector::Group(value.to_string()),
        })
    }

    fn matches(&self, name: &str, op: &str, group: Option<&str>) -> bool {
        match self {
            Selector::Group(g) => group == Some(g.as_str()),
            Selector::Node(re) => re.is_match(name),
            Selector::Op(t) => t.eq_ignore_ascii_case(op),
        }
    }
}

impl FromStr for Selector {
    type Err = ExportError;
    fn from_str(s: &str) -> Result<Selector> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Group(g) => write!(f, "group:{g}"),
            Selector::Node(re) => write!(f, "node:{}", re.as_str()),
            Selector::Op(t) => write!(f, "op:{t}"),
        }
    }
}

/// The names ([`node_id`]) of the nodes selected: all nodes when `include` is empty, else
/// those any include matches; then minus those any exclude matches. A group selector naming
/// no group of `groups` is an error that lists the known groups.
pub fn select(
    graph: &GraphProto,
    groups: &LayerGroups,
    include: &[Selector],
    exclude: &[Selector],
) -> Result<BTreeSet<String>> {
    for sel in include.iter().chain(exclude) {
        if let Selector::Group(g) = sel {
            if groups.group(g).is_none() {
                let why = if groups.empty.iter().any(|e| e == g) {
                    format!("group '{g}' matches no node of this model")
                } else {
                    format!("unknown group '{g}'")
                };
                return Err(ExportError::Policy(format!(
                    "{why} (groups of {}: {})",
                    groups.source,
                    groups.names().join(", ")
                )));
            }
        }
    }
    let of = groups.group_of_nodes();
    let mut out = BTreeSet::new();
    for (i, n) in graph.node.iter().enumerate() {
        let id = node_id(graph, i);
        let group = of.get(id.as_str()).copied();
        let hit = |s: &Selector| s.matches(&id, &n.op_type, group);
        if (include.is_empty() || include.iter().any(hit)) && !exclude.iter().any(hit) {
            out.insert(id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(
            scope("/xvector/block1/tdnnd1/Conv"),
            ["xvector", "block1", "tdnnd1"]
        );
        assert!(scope("/Transpose").is_empty());
        assert!(scope("Constant_260").is_empty());
        assert!(scope("").is_empty());
        assert_eq!(scope("//a//Conv"), ["a"]);
    }

    #[test]
    fn presets_parse() {
        for name in preset_names() {
            let spec = preset(name);
            assert!(spec.is_some(), "preset {name} does not parse");
        }
        assert!(preset("nope").is_none());
    }

    #[test]
    fn regex_errors_are_one_line() {
        let pattern = String::from("(");
        let e = Regex::new(&pattern).err();
        let line = e.as_ref().map(regex_error_line).unwrap_or_default();
        assert_eq!(line, "unclosed group");
    }

    /// A pattern that compiles to more than `PATTERN_SIZE_LIMIT` is refused with one line that
    /// names the file (specs) or the selector; ordinary node-name patterns, Unicode classes
    /// included, stay well inside it.
    #[test]
    fn oversized_patterns_are_refused() {
        for ok in [
            r"^/blocks\.[0-9]+/",
            r"\w+/conv/\w+$",
            r"(?i)^/xvector/block[123]/",
        ] {
            assert!(compile_pattern(ok).is_ok(), "{ok}");
        }
        let hostile = ".{1000}{10}";
        let text = format!(r#"{{"groups": [{{"name": "g", "patterns": ["{hostile}"]}}]}}"#);
        let e = GroupSpec::from_json("big.json", &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("big.json") && e.contains("size limit"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let e = Selector::parse(&format!("node:{hostile}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("size limit") && e.contains(hostile), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}
