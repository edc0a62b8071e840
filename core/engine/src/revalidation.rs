//! Flexible revalidation: the effective interval per access-list entry (`DOMAIN.md` §5).
//!
//! The key's own interval is always the maximum. A cylinder group's interval caps the
//! key's for that group. A profile's interval overrides the group's for keys holding the
//! profile; with several profiles on the same group the longest wins; with neither set,
//! the key's own interval applies.

/// Effective interval in hours for one entry.
///
/// * `key` — the key's revalidation interval (hours); `None` when revalidation is off.
/// * `group` — the cylinder group's interval, if the entry is (or lies in) a group with one.
/// * `profiles` — intervals of the access profiles giving this entry to the key.
pub fn effective_interval(key: Option<u32>, group: Option<u32>, profiles: &[u32]) -> Option<u32> {
    let key = key?;
    let chosen = match (profiles.iter().copied().max(), group) {
        (Some(p), _) => p,
        (None, Some(g)) => g,
        (None, None) => key,
    };
    Some(chosen.min(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u32 = 24;

    /// The worked example of DOMAIN.md §5 as a table.
    #[test]
    fn worked_example() {
        let rows: &[(u32, Option<u32>, &[u32], u32)] = &[
            (14, Some(7), &[], 7),        // key 14 d, group 7 d -> 7 d
            (14, Some(30), &[], 14),      // group 30 d -> capped by the key: 14 d
            (14, Some(7), &[10], 10),     // profile 10 d on a 7 d group -> 10 d
            (14, Some(7), &[10, 20], 14), // profiles 10 d and 20 d -> 20 d, capped by the key
            (30, Some(7), &[10, 20], 20), // ... 20 d when the key allows it
            (14, None, &[], 14),          // neither set: the key's
            (14, None, &[3], 3),          // a profile without a group interval
        ];
        for (key, group, profiles, expected) in rows {
            let p: Vec<u32> = profiles.iter().map(|d| d * DAY).collect();
            assert_eq!(
                effective_interval(Some(key * DAY), group.map(|g| g * DAY), &p),
                Some(expected * DAY),
                "key {key} group {group:?} profiles {profiles:?}"
            );
        }
        assert_eq!(
            effective_interval(None, Some(7), &[10]),
            None,
            "revalidation off"
        );
    }
}
