//! A set of numbers stored as coalesced runs, answering "lowest member not
//! in the set from here" in O(log n).

use std::collections::BTreeMap;

/// A set of `u128` values kept as maximal runs of consecutive values.
///
/// Adjacent runs are always merged, so the value after a run's end is never
/// in the set: that is what makes [`RangeSet::first_absent`] one lookup.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeSet {
    /// Run start → run end, both inclusive.
    runs: BTreeMap<u128, u128>,
}

impl RangeSet {
    /// The run that starts at or before `value`, whether or not it reaches
    /// it.
    fn run_at_or_before(&self, value: u128) -> Option<(u128, u128)> {
        self.runs
            .range(..=value)
            .next_back()
            .map(|(&start, &end)| (start, end))
    }

    /// Whether `value` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, value: u128) -> bool {
        matches!(self.run_at_or_before(value), Some((_, end)) if end >= value)
    }

    /// Adds `value`; returns false if it was already there.
    pub(crate) fn insert(&mut self, value: u128) -> bool {
        let before = self.run_at_or_before(value);
        if matches!(before, Some((_, end)) if end >= value) {
            return false;
        }
        // `end < value` here, so `end + 1` cannot overflow.
        let left = before.filter(|&(_, end)| end + 1 == value);
        let right = value
            .checked_add(1)
            .and_then(|next| self.runs.get(&next).map(|&end| (next, end)));
        match (left, right) {
            (Some((start, _)), Some((next, end))) => {
                self.runs.remove(&next);
                self.runs.insert(start, end);
            }
            (Some((start, _)), None) => {
                self.runs.insert(start, value);
            }
            (None, Some((next, end))) => {
                self.runs.remove(&next);
                self.runs.insert(value, end);
            }
            (None, None) => {
                self.runs.insert(value, value);
            }
        }
        true
    }

    /// Removes `value`; returns false if it was not there.
    pub(crate) fn remove(&mut self, value: u128) -> bool {
        let Some((start, end)) = self.run_at_or_before(value) else {
            return false;
        };
        if end < value {
            return false;
        }
        if start == value {
            self.runs.remove(&start);
        } else {
            self.runs.insert(start, value - 1);
        }
        if value < end {
            self.runs.insert(value + 1, end);
        }
        true
    }

    /// The lowest value in `low..=high` that is not in the set.
    pub(crate) fn first_absent(&self, low: u128, high: u128) -> Option<u128> {
        if low > high {
            return None;
        }
        let candidate = match self.run_at_or_before(low) {
            Some((_, end)) if end >= low => end.checked_add(1)?,
            _ => low,
        };
        (candidate <= high).then_some(candidate)
    }

    /// The number of runs (for tests and size estimates).
    #[cfg(test)]
    pub(crate) fn run_count(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn runs_coalesce_and_split() {
        let mut set = RangeSet::default();
        assert!(set.insert(5));
        assert!(set.insert(7));
        assert_eq!(set.run_count(), 2);
        assert!(set.insert(6));
        assert_eq!(set.run_count(), 1);
        assert!(!set.insert(6));
        assert!(set.insert(4));
        assert!(set.insert(8));
        assert_eq!(set.run_count(), 1);
        assert_eq!(set.first_absent(0, 100), Some(0));
        assert_eq!(set.first_absent(4, 100), Some(9));
        assert_eq!(set.first_absent(4, 8), None);
        assert!(set.remove(6));
        assert!(!set.remove(6));
        assert_eq!(set.run_count(), 2);
        assert_eq!(set.first_absent(4, 100), Some(6));
        assert!(set.remove(4));
        assert!(set.remove(8));
        assert!(set.contains(5) && set.contains(7) && !set.contains(4));
    }

    #[test]
    fn extremes() {
        let mut set = RangeSet::default();
        assert!(set.insert(u128::MAX));
        assert!(set.insert(u128::MAX - 1));
        assert!(set.insert(0));
        assert_eq!(set.first_absent(u128::MAX - 1, u128::MAX), None);
        assert_eq!(set.first_absent(0, 1), Some(1));
        assert!(set.remove(u128::MAX));
        assert_eq!(set.first_absent(u128::MAX - 1, u128::MAX), Some(u128::MAX));
        assert_eq!(set.first_absent(3, 2), None);
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((any::<bool>(), 0u128..64), 0..200)) {
            let mut set = RangeSet::default();
            let mut model = BTreeSet::new();
            for (insert, value) in ops {
                if insert {
                    prop_assert_eq!(set.insert(value), model.insert(value));
                } else {
                    prop_assert_eq!(set.remove(value), model.remove(&value));
                }
                for low in 0..64u128 {
                    let expected = (low..64).find(|v| !model.contains(v));
                    prop_assert_eq!(set.first_absent(low, 63), expected);
                    prop_assert_eq!(set.contains(low), model.contains(&low));
                }
                // Runs are maximal: never two adjacent.
                let runs: Vec<_> = set.runs.iter().map(|(&s, &e)| (s, e)).collect();
                for pair in runs.windows(2) {
                    prop_assert!(pair[0].1 + 1 < pair[1].0);
                }
            }
        }
    }
}
