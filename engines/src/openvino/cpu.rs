//! The CPU an OpenVINO engine runs on: its model name and the instruction-set features that
//! OpenVINO's CPU plugin picks kernels and precisions by. An engine records the features it
//! relied on; loading it where one is missing is refused (the compiled model and its precision
//! choices would not hold there).

/// Instruction-set features (as `/proc/cpuinfo` names them) that change what OpenVINO's CPU
/// plugin compiles: vector width, int8 dot products (VNNI, AMX) and bf16 arithmetic.
const RELEVANT: &[&str] = &[
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
];

fn cpuinfo() -> String {
    std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()
}

fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The CPU's model name (`AMD EPYC 9R14 96-Core Processor`), or `unknown CPU`.
pub fn cpu_model() -> String {
    field(&cpuinfo(), "model name")
        .unwrap_or("unknown CPU")
        .to_string()
}

/// This CPU's instruction-set features among the ones OpenVINO's CPU plugin depends on.
pub fn cpu_isa() -> Vec<String> {
    let info = cpuinfo();
    let flags: Vec<&str> = field(&info, "flags")
        .map(|f| f.split_whitespace().collect())
        .unwrap_or_default();
    RELEVANT
        .iter()
        .filter(|r| flags.contains(r))
        .map(|r| r.to_string())
        .collect()
}

/// The features an engine of `precision` relies on, from what this CPU has: the vector width
/// always, int8 dot products for int8 models, bf16 arithmetic for bf16 inference.
pub fn relied_isa(have: &[String], int8: bool, bf16: bool) -> Vec<String> {
    have.iter()
        .filter(|f| match f.as_str() {
            "avx2" | "avx512f" => true,
            "avx512_vnni" | "avx_vnni" | "amx_int8" => int8,
            "avx512_bf16" | "amx_bf16" => bf16,
            _ => false,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relied_features_follow_the_precision() {
        let have: Vec<String> = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(relied_isa(&have, false, false), ["avx2", "avx512f"]);
        assert_eq!(
            relied_isa(&have, true, false),
            ["avx2", "avx512f", "avx512_vnni"]
        );
        assert_eq!(
            relied_isa(&have, false, true),
            ["avx2", "avx512f", "avx512_bf16"]
        );
    }

    #[test]
    fn cpuinfo_fields_are_read() {
        let info = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2\n";
        assert_eq!(field(info, "model name"), Some("Some CPU"));
        assert_eq!(field(info, "flags"), Some("fpu avx2"));
        assert_eq!(field(info, "missing"), None);
    }
}
