//! AWS naming rules shared by the layers that name resources and those that find them again.

/// ELB names are at most 32 characters: `<stack>-<name>`, shortened with a hash when longer.
pub fn elb_name(stack: &str, name: &str) -> String {
    let full = format!("{stack}-{name}");
    if full.len() <= 32 {
        return full;
    }
    let hash = full.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let suffix = format!("-{:06x}", hash & 0xff_ffff);
    let keep = 32 - suffix.len();
    format!("{}{suffix}", full[..keep].trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::elb_name;

    #[test]
    fn names_fit_elb_limits_and_stay_unique() {
        assert_eq!(elb_name("demo", "web"), "demo-web");
        let a = elb_name("a-very-long-stack-name-for-the-team", "web");
        let b = elb_name("a-very-long-stack-name-for-the-tean", "web");
        assert!(a.len() <= 32 && b.len() <= 32);
        assert_ne!(a, b);
        assert!(!a.contains("--"));
    }
}
