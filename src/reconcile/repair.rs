//! `mvconf audit --fix`: the repair of an audit's findings, planned. Pure:
//! findings and what the bindings remember in, steps out. The CLI prints
//! the plan and applies it only when told to.
//!
//! A repair never touches a container no binding manages (a foreign
//! holder, a host on the segment): those findings are left, with what a
//! person can do. What is ours is disconnected where it is wrong, then the
//! binding's pass for that service binds it again (its slot's remembered
//! address when that is free, another free one of its pool otherwise).

use super::audit::{Finding, Holder};
use crate::crd::ContainerRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

/// One change the repair makes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub(crate) enum Step {
    /// Disconnect one of our containers from a network it is wrong on.
    #[serde(rename_all = "camelCase")]
    Disconnect {
        node: String,
        container: String,
        network: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ip: Option<Ipv4Addr>,
        because: String,
    },
    /// Run the binding's pass for one service: its running containers
    /// without their address get one.
    #[serde(rename_all = "camelCase")]
    Rebind { binding: String, service: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Disconnect {
                node,
                container,
                network,
                ip,
                because,
            } => {
                write!(
                    f,
                    "disconnect container {container} on {node} from {network}"
                )?;
                if let Some(ip) = ip {
                    write!(f, " (releases {ip})")?;
                }
                write!(f, ": {because}")
            }
            Step::Rebind { binding, service } => write!(
                f,
                "rebind service {service} of {binding}: its running containers without their address get one from its pool"
            ),
        }
    }
}

/// A finding the repair does not act on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Left {
    pub(crate) finding: Finding,
    pub(crate) why: String,
}

/// What `audit --fix` will do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Repair {
    /// Disconnects first, then rebinds.
    pub(crate) steps: Vec<Step>,
    /// Findings left as they are.
    pub(crate) left: Vec<Left>,
    /// Findings of an earlier report (`--from-report`) not repaired because
    /// they no longer hold as written.
    pub(crate) refused: Vec<Left>,
}

impl Repair {
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "REPAIR  {s}")?;
        }
        for l in &self.left {
            writeln!(f, "LEFT    {}: {}", l.finding, l.why)?;
        }
        for l in &self.refused {
            writeln!(f, "REFUSED {}: {}", l.finding, l.why)?;
        }
        write!(
            f,
            "repair: {} step{}, {} finding{} left, {} refused",
            self.steps.len(),
            if self.steps.len() == 1 { "" } else { "s" },
            self.left.len(),
            if self.left.len() == 1 { "" } else { "s" },
            self.refused.len()
        )
    }
}

/// What the repair needs to know about the bindings audited.
#[derive(Debug, Default)]
pub(crate) struct Bindings<'a> {
    /// Service -> the binding (as the audit names it) that lists it.
    pub(crate) service_of: BTreeMap<&'a str, &'a str>,
    /// Each binding's per-container records (its memory).
    pub(crate) records: BTreeMap<&'a str, &'a [ContainerRecord]>,
    /// Services left to someone else (a MacvlanBinding's operator, when a
    /// conf.json is repaired), with what to run instead.
    pub(crate) owned_elsewhere: BTreeMap<&'a str, String>,
}

impl Bindings<'_> {
    /// The binding that manages `holder`, when one of the audited ones does.
    fn manager(&self, holder: &Holder) -> Option<&str> {
        self.service_of.get(holder.service.as_deref()?).copied()
    }

    /// Whether `binding`'s records say `holder` has `ip`.
    fn remembers(&self, binding: &str, holder: &Holder, ip: Ipv4Addr) -> bool {
        let ip = ip.to_string();
        self.records.get(binding).is_some_and(|rs| {
            rs.iter().any(|r| {
                r.ip.as_deref() == Some(ip.as_str())
                    && (r.container.starts_with(&holder.container)
                        || holder.container.starts_with(&r.container))
                    && !r.container.is_empty()
            })
        })
    }
}

/// Steps as they are planned: each once, disconnects before rebinds.
#[derive(Default)]
struct Steps {
    disconnects: BTreeSet<Step>,
    rebinds: BTreeSet<Step>,
}

impl Steps {
    /// One of our containers is wrong where it is: off that network, and
    /// its service bound again.
    fn move_ours(&mut self, binding: &str, holder: &Holder, ip: Option<Ipv4Addr>, because: String) {
        self.disconnects.insert(Step::Disconnect {
            node: holder.node.clone(),
            container: holder.container.clone(),
            network: holder.network.clone(),
            ip,
            because,
        });
        if let Some(service) = &holder.service {
            self.rebinds.insert(Step::Rebind {
                binding: binding.to_owned(),
                service: service.clone(),
            });
        }
    }
}

/// Plans the repair of `findings`.
pub(crate) fn plan(findings: &[Finding], bindings: &Bindings<'_>) -> Repair {
    let mut steps = Steps::default();
    let mut left = Vec::new();
    let mut leave = |f: &Finding, why: &str| {
        left.push(Left {
            finding: f.clone(),
            why: why.to_owned(),
        });
    };
    for f in findings {
        if let Some(why) = services_of(f)
            .into_iter()
            .find_map(|s| bindings.owned_elsewhere.get(s))
        {
            leave(f, why);
            continue;
        }
        match f {
            Finding::DuplicateAddress { ip, holders } => {
                let foreign: Vec<&Holder> = holders
                    .iter()
                    .filter(|h| bindings.manager(h).is_none())
                    .collect();
                if !foreign.is_empty() {
                    let names: Vec<String> = foreign.iter().map(ToString::to_string).collect();
                    leave(
                        f,
                        &format!(
                            "{} is not managed by an audited binding and is never touched; ours keeps {ip}: stop it or give it another address",
                            names.join("; ")
                        ),
                    );
                    continue;
                }
                // All ours: the one its binding remembers with this address
                // keeps it (the first otherwise); the others move.
                let keeper = holders
                    .iter()
                    .position(|h| {
                        bindings
                            .manager(h)
                            .is_some_and(|b| bindings.remembers(b, h, *ip))
                    })
                    .unwrap_or(0);
                for (i, h) in holders.iter().enumerate() {
                    if i == keeper {
                        continue;
                    }
                    if let Some(b) = bindings.manager(h) {
                        let because =
                            format!("{ip} is also on {}, which keeps it", holders[keeper]);
                        steps.move_ours(b, h, Some(*ip), because);
                    }
                }
            }
            Finding::OutOfPool {
                binding,
                holder,
                ip,
            } => steps.move_ours(
                binding,
                holder,
                Some(*ip),
                format!("{ip} is outside the pool of service {}", svc(holder)),
            ),
            Finding::WrongNetwork {
                binding,
                holder,
                expected,
                ip,
            } => steps.move_ours(
                binding,
                holder,
                *ip,
                format!("service {} belongs on {expected}", svc(holder)),
            ),
            Finding::Unbound {
                binding, service, ..
            } => {
                steps.rebinds.insert(Step::Rebind {
                    binding: binding.clone(),
                    service: service.clone(),
                });
            }
            Finding::LeftBehind { holder, ip } => {
                if holder.service.is_some() {
                    steps.disconnects.insert(Step::Disconnect {
                        node: holder.node.clone(),
                        container: holder.container.clone(),
                        network: holder.network.clone(),
                        ip: *ip,
                        because: "left behind on a network mvconf created: no binding claims it"
                            .to_owned(),
                    });
                } else {
                    leave(
                        f,
                        "not a swarm task: someone connected it by hand, so it is foreign and never touched",
                    );
                }
            }
            Finding::StatusContradicted { .. } => leave(
                f,
                "the operator rewrites its records from Docker at its next pass; nothing to change in Docker",
            ),
            Finding::ForeignInPool { .. } => leave(
                f,
                "a foreign holder is never touched: stop that container or take the address out of the pool",
            ),
            Finding::UnseenHolder { .. } => leave(
                f,
                "a host Docker does not show is never touched: list it in the network's reserved, or free the address",
            ),
            Finding::NodeUnreadable { .. } => leave(
                f,
                "nothing on a node that cannot be read is repaired: fix its engine (or the gateway's node proxy), then audit again",
            ),
        }
    }
    let Steps {
        disconnects,
        rebinds,
    } = steps;
    Repair {
        steps: disconnects.into_iter().chain(rebinds).collect(),
        left,
        refused: Vec::new(),
    }
}

/// The services of our containers that a finding is about.
fn services_of(f: &Finding) -> Vec<&str> {
    match f {
        Finding::DuplicateAddress { holders, .. } => holders
            .iter()
            .filter_map(|h| h.service.as_deref())
            .collect(),
        Finding::OutOfPool { holder, .. }
        | Finding::WrongNetwork { holder, .. }
        | Finding::LeftBehind { holder, .. } => holder.service.as_deref().into_iter().collect(),
        Finding::Unbound { service, .. } => vec![service.as_str()],
        Finding::StatusContradicted { .. }
        | Finding::ForeignInPool { .. }
        | Finding::UnseenHolder { .. }
        | Finding::NodeUnreadable { .. } => Vec::new(),
    }
}

fn svc(h: &Holder) -> &str {
    h.service.as_deref().unwrap_or("?")
}

/// `--from-report`: the findings of an earlier report that still hold as
/// written (the same finding in today's audit), and the others, refused.
pub(crate) fn still_holding(earlier: &[Finding], now: &[Finding]) -> (Vec<Finding>, Vec<Left>) {
    let current: BTreeSet<&Finding> = now.iter().collect();
    let mut keep = Vec::new();
    let mut refused = Vec::new();
    for f in earlier {
        if current.contains(f) {
            keep.push(f.clone());
        } else {
            refused.push(Left {
                finding: f.clone(),
                why: "no longer holds as the report wrote it (changed since): audit again and repair what is true now".to_owned(),
            });
        }
    }
    (keep, refused)
}

/// An earlier `mvconf audit -o json` report, as far as the repair reads it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EarlierReport {
    pub(crate) findings: Vec<Finding>,
}

#[cfg(test)]
mod tests;
