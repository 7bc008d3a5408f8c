//! Raising the open-file limit: every virtual user keeps its own keep-alive
//! connection, so 2,000 users need 2,000 descriptors, more than the common
//! soft limit of 1,024. Raising the soft limit up to the hard limit needs no
//! privilege; beyond that the user must raise it (`ulimit -n`).

/// The soft open-file limit before and after [`raise_open_files`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    /// Soft limit found at start.
    pub before: u64,
    /// Soft limit now in force.
    pub after: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit.
#[cfg(unix)]
pub fn raise_open_files() -> std::io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    // macOS reports an unlimited hard limit but refuses more than OPEN_MAX.
    let mut after = before;
    for wanted in [limit.rlim_max, limit.rlim_max.min(10_240)] {
        if wanted <= before {
            break;
        }
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            after = wanted;
            break;
        }
    }
    Ok(OpenFiles {
        before: to_u64(before),
        after: to_u64(after),
    })
}

/// Non-Unix systems have no such limit to raise here.
#[cfg(not(unix))]
pub fn raise_open_files() -> std::io::Result<OpenFiles> {
    Ok(OpenFiles {
        before: u64::MAX,
        after: u64::MAX,
    })
}

#[cfg(unix)]
#[allow(clippy::useless_conversion)] // rlim_t is u64 on most Unixes, not all.
fn to_u64(n: libc::rlim_t) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers() {
        let first = raise_open_files().unwrap();
        assert!(first.after >= first.before);
        let second = raise_open_files().unwrap();
        assert_eq!(second.before, first.after);
        assert_eq!(second.after, first.after);
    }
}
