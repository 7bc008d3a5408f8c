//! The linear ramp: how many virtual users run at time `t`, and when each
//! user starts.
//!
//! Users run from `start` at `t = 0` to `max` at `t = duration`, rising by one
//! whenever `start + (max - start) * t / duration` crosses the next integer.
//! [`Ramp::start_offset`] is the exact inverse of [`Ramp::users_at`], so the
//! spawner can sleep until each user is due instead of polling.

use std::time::Duration;

/// A linear ramp of virtual users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ramp {
    start: u32,
    max: u32,
    duration: Duration,
}

impl Ramp {
    /// A ramp from `start` to `max` users over `duration`; `None` if
    /// `start > max`.
    pub fn new(start: u32, max: u32, duration: Duration) -> Option<Ramp> {
        (start <= max).then_some(Ramp {
            start,
            max,
            duration,
        })
    }

    /// Users at the start of the ramp.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// Users at the end of the ramp.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// How long the ramp takes.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// How many users should be running `t` after the start.
    pub fn users_at(&self, t: Duration) -> u32 {
        if t >= self.duration {
            return self.max;
        }
        let rise = u128::from(self.max - self.start) * t.as_nanos() / self.duration.as_nanos();
        // rise < max - start because t < duration, so this fits in u32.
        self.start + rise as u32
    }

    /// When user number `user` (counting from 0) starts: the earliest `t`
    /// with `users_at(t) > user`. Users at or past `max` start at the end.
    pub fn start_offset(&self, user: u32) -> Duration {
        if user < self.start {
            return Duration::ZERO;
        }
        if user >= self.max {
            return self.duration;
        }
        let span = u128::from(self.max - self.start);
        let k = u128::from(user - self.start + 1);
        // Rounded up, so users_at(offset) is already past `user`.
        let nanos = (self.duration.as_nanos() * k).div_ceil(span);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: Duration = Duration::from_nanos(1);

    #[test]
    fn users_rise_linearly() {
        let r = Ramp::new(10, 2000, Duration::from_secs(100)).unwrap();
        assert_eq!(r.users_at(Duration::ZERO), 10);
        assert_eq!(r.users_at(Duration::from_secs(1)), 29); // 10 + 19.9
        assert_eq!(r.users_at(Duration::from_secs(50)), 1005);
        assert_eq!(r.users_at(Duration::from_secs(100) - NS), 1999);
        assert_eq!(r.users_at(Duration::from_secs(100)), 2000);
        assert_eq!(r.users_at(Duration::from_secs(1000)), 2000);
    }

    #[test]
    fn start_offset_inverts_users_at() {
        for r in [
            Ramp::new(10, 2000, Duration::from_secs(100)).unwrap(),
            Ramp::new(0, 7, Duration::from_millis(333)).unwrap(),
            Ramp::new(1, 3, Duration::from_secs(20)).unwrap(),
        ] {
            let mut previous = Duration::ZERO;
            for user in 0..r.max() {
                let t = r.start_offset(user);
                assert!(t >= previous, "offsets never go back");
                assert!(
                    r.users_at(t) > user,
                    "{r:?}: user {user} is running at {t:?}"
                );
                if !t.is_zero() {
                    assert!(
                        r.users_at(t - NS) <= user,
                        "{r:?}: user {user} starts no later than due"
                    );
                }
                previous = t;
            }
            assert_eq!(r.start_offset(r.max() - 1), r.duration());
        }
    }

    #[test]
    fn first_users_start_at_once() {
        let r = Ramp::new(10, 2000, Duration::from_secs(100)).unwrap();
        assert_eq!(r.start_offset(0), Duration::ZERO);
        assert_eq!(r.start_offset(9), Duration::ZERO);
        // 1990 users over 100 s: one every 100/1990 s.
        assert_eq!(r.start_offset(10), Duration::from_nanos(50_251_257));
    }

    #[test]
    fn no_ramp_means_everyone_at_once() {
        let r = Ramp::new(10, 50, Duration::ZERO).unwrap();
        assert_eq!(r.users_at(Duration::ZERO), 50);
        assert!((0..50).all(|u| r.start_offset(u).is_zero()));
    }

    #[test]
    fn flat_ramp() {
        let r = Ramp::new(5, 5, Duration::from_secs(10)).unwrap();
        assert_eq!(r.users_at(Duration::from_secs(3)), 5);
        assert!((0..5).all(|u| r.start_offset(u).is_zero()));
    }

    #[test]
    fn start_above_max_is_refused() {
        assert_eq!(Ramp::new(3, 2, Duration::from_secs(1)), None);
    }
}
