//! How a new container process gets into its cgroups: one pure decision.
//!
//! `create` (for the init) and `exec` (for an exec'd process) both clone a
//! child that must end up in the container's cgroups before it runs any
//! container code. There are four ways to get it there, and which one is
//! fastest or even possible depends on the host's cgroup layout, on the
//! namespaces the config asks for and on the runtime's privileges:
//!
//! - **Extra fork** ([`CgroupJoin::ExtraFork`]): when the child must join a
//!   user namespace (or create one and then join others) and fork once more
//!   so that a pid namespace applies, the runtime migrates the first child
//!   before it forks; the grandchild is born inside.
//! - **Clone into cgroup2** ([`CgroupJoin::CloneIntoV2`]): on a pure cgroup2
//!   host the child is cloned straight into its directory (clone3
//!   `CLONE_INTO_CGROUP`), so no migration and no RCU grace period; the
//!   runtime migrates it only when clone3 fell back to clone.
//! - **Self-join** ([`CgroupJoin::SelfJoinLate`], [`CgroupJoin::SelfJoin`]):
//!   a privileged child outside a user namespace writes `0` to each v1
//!   hierarchy's `tasks` file itself (moving the calling thread takes no
//!   threadgroup lock, while writing a pid to `cgroup.procs` waits for an RCU
//!   grace period, 5-30 ms here). On a hybrid host it is also cloned into its
//!   cgroup2 directory. On a pure v1 host the cgroups are created after GO
//!   (late), overlapping with the child's namespace and mount setup.
//! - **Runtime migrates** ([`CgroupJoin::RuntimeMigrates`]): everything else
//!   (rootless, a user namespace, an unprivileged runtime): the runtime
//!   writes the child's pid after GO. `late` when the init has a cgroup
//!   namespace on a v1 or hybrid host and is not rootless.
//!
//! [`decide`] is the only place that chooses; the runtime (`create`, `exec`)
//! and the init ([`crate::linux::init`]) only ask the answer questions.

use skiff_cgroups::Layout;

/// Which process is being spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawn {
    /// The container init (`create`).
    Create,
    /// A process exec'd into a running container (`exec`).
    Exec,
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// The host's cgroup layout.
    pub layout: Layout,
    /// Init or exec.
    pub spawn: Spawn,
    /// The runtime runs with euid 0.
    pub euid_root: bool,
    /// Rootless mode (`--rootless`, or the container was created so).
    pub rootless: bool,
    /// A new user namespace is created (create only).
    pub new_user_ns: bool,
    /// A user namespace is joined by path (create) or the container has one
    /// (exec).
    pub joins_user_ns: bool,
    /// Namespaces other than pid and time are joined by path (create).
    pub joins_other_ns: bool,
    /// A pid or time namespace is joined (exec: the container has one).
    pub joins_pid_or_time_ns: bool,
    /// A new cgroup namespace is created (create only).
    pub new_cgroup_ns: bool,
}

/// How the spawned process gets into its cgroups (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupJoin {
    /// The child forks once more after joining namespaces; the runtime
    /// migrates it before GO, the grandchild is forked inside.
    ExtraFork,
    /// Cloned into the cgroup2 directory; migrated only if clone3 failed.
    CloneIntoV2,
    /// Create on pure v1: the child writes `0` to its `tasks` files on
    /// JOINED, after the runtime created the cgroups (late, after GO).
    SelfJoinLate,
    /// The child writes `0` to its v1 `tasks` files right after GO and is
    /// cloned into its cgroup2 directory if the host has one (hybrid; the
    /// runtime migrates it there only if clone3 failed).
    SelfJoin,
    /// The runtime writes the child's pid to its cgroups after GO. `late`:
    /// the cgroups are created after GO too (a cgroup namespace on v1).
    RuntimeMigrates {
        /// Create and configure the cgroups after GO.
        late: bool,
    },
}

/// The one decision: how a process spawned with `i` joins its cgroups.
pub fn decide(i: &Inputs) -> CgroupJoin {
    let privileged = i.euid_root && !i.rootless;
    let extra_fork = match i.spawn {
        // A joined user namespace, or a new one with other namespaces to
        // join from inside it.
        Spawn::Create => i.joins_user_ns || (i.new_user_ns && i.joins_other_ns),
        // Unprivileged, the runtime may not join the container's pid (or
        // time) namespace: the child joins the user namespace first, then
        // those, and forks once more (runc's nsexec).
        Spawn::Exec => i.joins_user_ns && !i.euid_root && i.joins_pid_or_time_ns,
    };
    if extra_fork {
        return CgroupJoin::ExtraFork;
    }
    // A create in a user namespace writes `tasks` from inside it (the
    // clone made it), which the host's cgroupfs refuses; an exec'd process
    // joins its cgroups before entering the container's user namespace.
    let in_userns_at_join = i.spawn == Spawn::Create && (i.new_user_ns || i.joins_user_ns);
    let self_join = privileged && !in_userns_at_join && i.layout != Layout::V2;
    match (i.layout, self_join) {
        (Layout::V2, _) => CgroupJoin::CloneIntoV2,
        // An exec'd process joins on GO (no JOINED round trip), into
        // cgroups that exist already.
        (Layout::V1, true) if i.spawn == Spawn::Create => CgroupJoin::SelfJoinLate,
        (_, true) => CgroupJoin::SelfJoin,
        (_, false) => CgroupJoin::RuntimeMigrates {
            late: i.spawn == Spawn::Create && !i.rootless && i.new_cgroup_ns,
        },
    }
}

impl CgroupJoin {
    /// The child forks once more after joining its namespaces.
    pub fn extra_fork(self) -> bool {
        self == CgroupJoin::ExtraFork
    }

    /// The child writes `0` to its v1 hierarchies' `tasks` files.
    pub fn self_join(self) -> bool {
        matches!(self, CgroupJoin::SelfJoinLate | CgroupJoin::SelfJoin)
    }

    /// The child is cloned into its cgroup2 directory (when the host has
    /// one: an exec on a pure v1 host self-joins without it).
    pub fn clone_into_v2(self) -> bool {
        matches!(self, CgroupJoin::CloneIntoV2 | CgroupJoin::SelfJoin)
    }

    /// The cgroups are created and configured after GO; the child joins
    /// them (or waits for the runtime to move it) on JOINED.
    pub fn late(self) -> bool {
        matches!(
            self,
            CgroupJoin::SelfJoinLate | CgroupJoin::RuntimeMigrates { late: true }
        )
    }

    /// The runtime writes the child's pid to the cgroups it does not join
    /// itself (with a self-join: the cgroup2 directory, which clone3 missed
    /// when `in_cgroup` is false). `create` does it before GO after an extra
    /// fork and after GO otherwise; `exec` always before GO.
    pub fn runtime_migrates(self, in_cgroup: bool) -> bool {
        match self {
            CgroupJoin::ExtraFork => true,
            CgroupJoin::SelfJoinLate => false,
            CgroupJoin::CloneIntoV2 | CgroupJoin::SelfJoin | CgroupJoin::RuntimeMigrates { .. } => {
                !in_cgroup
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUTS: [Layout; 3] = [Layout::V1, Layout::V2, Layout::Hybrid];

    fn base(layout: Layout, spawn: Spawn) -> Inputs {
        Inputs {
            layout,
            spawn,
            euid_root: true,
            rootless: false,
            new_user_ns: false,
            joins_user_ns: false,
            joins_other_ns: false,
            joins_pid_or_time_ns: false,
            new_cgroup_ns: false,
        }
    }

    #[test]
    fn default_namespaces_privileged() {
        let want = [
            (Layout::V1, CgroupJoin::SelfJoinLate),
            (Layout::V2, CgroupJoin::CloneIntoV2),
            (Layout::Hybrid, CgroupJoin::SelfJoin),
        ];
        for (layout, j) in want {
            assert_eq!(decide(&base(layout, Spawn::Create)), j, "{layout:?}");
        }
    }

    #[test]
    fn cgroup_namespace() {
        for layout in LAYOUTS {
            let i = Inputs {
                new_cgroup_ns: true,
                ..base(layout, Spawn::Create)
            };
            // Privileged: same as without (self-join is already late on v1).
            assert_eq!(decide(&i), decide(&base(layout, Spawn::Create)));
            let user = Inputs {
                new_user_ns: true,
                ..i
            };
            let want = match layout {
                Layout::V2 => CgroupJoin::CloneIntoV2,
                _ => CgroupJoin::RuntimeMigrates { late: true },
            };
            assert_eq!(decide(&user), want, "{layout:?}");
            assert!(decide(&user).late() != (layout == Layout::V2));
        }
    }

    #[test]
    fn new_user_namespace() {
        for layout in LAYOUTS {
            let i = Inputs {
                new_user_ns: true,
                ..base(layout, Spawn::Create)
            };
            let want = match layout {
                Layout::V2 => CgroupJoin::CloneIntoV2,
                _ => CgroupJoin::RuntimeMigrates { late: false },
            };
            assert_eq!(decide(&i), want, "{layout:?}");
            // With other namespaces joined from inside it: an extra fork.
            let joins = Inputs {
                joins_other_ns: true,
                ..i
            };
            assert_eq!(decide(&joins), CgroupJoin::ExtraFork, "{layout:?}");
            assert!(decide(&joins).runtime_migrates(true));
        }
    }

    #[test]
    fn joined_user_namespace_forks_again() {
        for layout in LAYOUTS {
            let i = Inputs {
                joins_user_ns: true,
                ..base(layout, Spawn::Create)
            };
            assert_eq!(decide(&i), CgroupJoin::ExtraFork, "{layout:?}");
        }
    }

    #[test]
    fn joined_other_namespaces_without_user_ns() {
        for layout in LAYOUTS {
            let i = Inputs {
                joins_other_ns: true,
                joins_pid_or_time_ns: true,
                ..base(layout, Spawn::Create)
            };
            assert_eq!(decide(&i), decide(&base(layout, Spawn::Create)));
        }
    }

    #[test]
    fn rootless_and_unprivileged_never_self_join() {
        for layout in LAYOUTS {
            for (euid_root, rootless) in [(true, true), (false, false), (false, true)] {
                let i = Inputs {
                    euid_root,
                    rootless,
                    new_user_ns: true,
                    new_cgroup_ns: true,
                    ..base(layout, Spawn::Create)
                };
                let want = match layout {
                    Layout::V2 => CgroupJoin::CloneIntoV2,
                    // An unprivileged, not rootless runtime still creates
                    // a cgroup namespace's cgroups late.
                    _ => CgroupJoin::RuntimeMigrates { late: !rootless },
                };
                assert_eq!(decide(&i), want, "{layout:?} {euid_root} {rootless}");
            }
        }
    }

    #[test]
    fn exec() {
        let want = [
            (Layout::V1, CgroupJoin::SelfJoin),
            (Layout::V2, CgroupJoin::CloneIntoV2),
            (Layout::Hybrid, CgroupJoin::SelfJoin),
        ];
        for (layout, j) in want {
            let i = base(layout, Spawn::Exec);
            assert_eq!(decide(&i), j, "{layout:?}");
            // An exec'd process joins its cgroups before the container's
            // user namespace: still a self-join when privileged.
            let user = Inputs {
                joins_user_ns: true,
                joins_pid_or_time_ns: true,
                ..i
            };
            assert_eq!(decide(&user), j, "{layout:?}");
            assert!(!decide(&user).late());
            // Unprivileged with a user and a pid namespace: extra fork.
            let unpriv = Inputs {
                euid_root: false,
                ..user
            };
            assert_eq!(decide(&unpriv), CgroupJoin::ExtraFork, "{layout:?}");
            // Rootless without a pid namespace: the runtime migrates.
            let rootless = Inputs {
                rootless: true,
                joins_pid_or_time_ns: false,
                ..user
            };
            let want = match layout {
                Layout::V2 => CgroupJoin::CloneIntoV2,
                _ => CgroupJoin::RuntimeMigrates { late: false },
            };
            assert_eq!(decide(&rootless), want, "{layout:?}");
        }
    }

    /// The flags `create` and `exec` derived inline before this module,
    /// restated literally: `decide` must agree on every input.
    #[test]
    fn agrees_with_the_inline_flags_on_every_input() {
        for layout in LAYOUTS {
            for bits in 0u32..(1 << 7) {
                let b = |n: u32| bits & (1 << n) != 0;
                for spawn in [Spawn::Create, Spawn::Exec] {
                    let i = Inputs {
                        layout,
                        spawn,
                        euid_root: b(0),
                        rootless: b(1),
                        new_user_ns: b(2) && spawn == Spawn::Create,
                        joins_user_ns: b(3),
                        joins_other_ns: b(4) || (b(3) && spawn == Spawn::Create),
                        joins_pid_or_time_ns: b(5),
                        new_cgroup_ns: b(6) && spawn == Spawn::Create,
                    };
                    let j = decide(&i);
                    let (fork_again, self_join, clone_v2, late) = inline_flags(&i);
                    assert_eq!(j.extra_fork(), fork_again, "{i:?}");
                    assert_eq!(j.self_join(), self_join, "{i:?}");
                    assert_eq!(j.clone_into_v2(), clone_v2, "{i:?}");
                    assert_eq!(j.late(), late, "{i:?}");
                    for in_cgroup in [false, true] {
                        let migrate = inline_migrate(&i, fork_again, self_join, in_cgroup);
                        assert_eq!(j.runtime_migrates(in_cgroup), migrate, "{i:?}");
                    }
                }
            }
        }
    }

    fn inline_flags(i: &Inputs) -> (bool, bool, bool, bool) {
        let (fork_again, self_join) = match i.spawn {
            Spawn::Create => {
                let fork_again = i.joins_user_ns || (i.new_user_ns && i.joins_other_ns);
                let self_join = !fork_again
                    && !i.rootless
                    && i.euid_root
                    && !i.new_user_ns
                    && !i.joins_user_ns
                    && i.layout != Layout::V2;
                (fork_again, self_join)
            }
            Spawn::Exec => {
                let fork_again = i.joins_user_ns && !i.euid_root && i.joins_pid_or_time_ns;
                let self_join = i.euid_root && !fork_again && !i.rootless && i.layout != Layout::V2;
                (fork_again, self_join)
            }
        };
        let clone_v2 = match (i.spawn, i.layout) {
            (_, Layout::V2) => !fork_again,
            (Spawn::Create, Layout::Hybrid) => self_join,
            (Spawn::Create, Layout::V1) => false,
            // exec: `into_cgroup` when it joins itself (a v1 host has no
            // cgroup2 directory to clone into).
            (Spawn::Exec, _) => !fork_again && self_join,
        };
        let late = i.spawn == Spawn::Create
            && !fork_again
            && !i.rootless
            && (i.new_cgroup_ns || self_join)
            && !clone_v2;
        (fork_again, self_join, clone_v2, late)
    }

    fn inline_migrate(i: &Inputs, fork_again: bool, self_join: bool, in_cgroup: bool) -> bool {
        match i.spawn {
            // create: `add_task` before GO after an extra fork, `migrate`
            // after GO otherwise.
            Spawn::Create => {
                fork_again || (!in_cgroup && (!self_join || i.layout == Layout::Hybrid))
            }
            // exec: `add` (the cgroup2 part only when it joined v1 itself;
            // a v1 host has none, so the step writes nothing there).
            Spawn::Exec => fork_again || !in_cgroup,
        }
    }
}
