//! When a node wants space back: its charged bytes near the quota, or its
//! disk's free space near the free-space floor. Above a high-water mark the
//! node drops replicas it is no longer responsible for (`upkeep/shed.rs`)
//! until it is back under the low-water mark, so it keeps taking new blocks
//! instead of refusing them once full. Pure: the caller measures.

/// High- and low-water marks, in percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks {
    /// Space is wanted from this share of the quota; 0 turns dropping off.
    pub high: u8,
    /// ... until usage is back at this share.
    pub low: u8,
}

impl Default for Marks {
    fn default() -> Self {
        Marks { high: 90, low: 80 }
    }
}

/// Bytes to free: for the quota, down to `low`% of it once `charged` reached
/// `high`%; for the disk (`available` and the `floor`, when known), back up
/// to twice the floor once free space fell below that: the floor refuses new
/// blocks, so shedding starts while a floor's worth is still left. 0 when
/// neither mark is reached or dropping is off.
pub fn bytes_wanted(
    charged: u64,
    quota: Option<u64>,
    disk: Option<(u64, u64)>,
    marks: Marks,
) -> u64 {
    if marks.high == 0 {
        return 0;
    }
    let share = |q: u64, pct: u8| (u128::from(q) * u128::from(pct.min(100)) / 100) as u64;
    let by_quota = match quota {
        Some(q) if charged >= share(q, marks.high) => {
            charged.saturating_sub(share(q, marks.low.min(marks.high)))
        }
        _ => 0,
    };
    let by_disk = match disk {
        Some((available, floor)) if floor > 0 && available < floor.saturating_mul(2) => {
            floor.saturating_mul(2) - available
        }
        _ => 0,
    };
    by_quota.max(by_disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKS: Marks = Marks { high: 90, low: 80 };

    #[test]
    fn nothing_is_wanted_under_the_high_water_mark() {
        assert_eq!(bytes_wanted(899, Some(1000), None, MARKS), 0);
        assert_eq!(bytes_wanted(10_000, None, None, MARKS), 0, "no quota");
        assert_eq!(bytes_wanted(0, None, Some((2_000, 1_000)), MARKS), 0);
    }

    #[test]
    fn over_the_mark_down_to_the_low_water_mark() {
        assert_eq!(bytes_wanted(900, Some(1000), None, MARKS), 100);
        assert_eq!(bytes_wanted(1000, Some(1000), None, MARKS), 200);
    }

    #[test]
    fn a_disk_near_its_floor_wants_space_back() {
        assert_eq!(bytes_wanted(0, None, Some((1_500, 1_000)), MARKS), 500);
        assert_eq!(bytes_wanted(0, None, Some((500, 1_000)), MARKS), 1_500);
        assert_eq!(bytes_wanted(0, None, Some((0, 0)), MARKS), 0, "floor off");
        assert_eq!(
            bytes_wanted(950, Some(1000), Some((1_900, 1_000)), MARKS),
            150,
            "the larger"
        );
    }

    #[test]
    fn a_high_mark_of_zero_turns_dropping_off() {
        let off = Marks { high: 0, low: 0 };
        assert_eq!(bytes_wanted(1000, Some(1000), Some((0, 1_000)), off), 0);
    }
}
