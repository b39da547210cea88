//! `mvconf status`: the table of containers and their macvlan addresses, as
//! Docker shows them now.

use super::endpoint::EndpointArgs;
use super::ops::connect;
use super::{CliError, emit};
use crate::reconcile::{Memory, Mode, Pass, Record, RecordState, Slot};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StatusArgs {
    /// Truncate long values such as container IDs (the default).
    #[arg(long, overrides_with = "no_trunc")]
    pub(crate) trunc: bool,
    /// Show full container and task IDs.
    #[arg(long = "no-trunc")]
    pub(crate) no_trunc: bool,
    /// Fields to sort by, comma separated, e.g. 'macvlan_ip,service_name'
    /// ('macvlan_ip' = 'MACVLAN_IP' = 'MACVLAN IP').
    #[arg(long)]
    pub(crate) sort: Option<String>,
    /// Fields to show, comma separated (same names as --sort).
    #[arg(long, alias = "field")]
    pub(crate) fields: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
    /// Nodes read at once.
    #[arg(long, default_value_t = 32)]
    pub(crate) observe_concurrency: usize,
}

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    MacvlanIp,
    ServiceName,
    Slot,
    Hostname,
    HostIp,
    ContainerId,
    Network,
    Ingress,
    State,
    /// The MacvlanBinding whose operator owns the service (`-` for none).
    Owner,
}

/// The columns, in their default order.
pub(crate) const FIELDS: &[Field] = &[
    Field::MacvlanIp,
    Field::ServiceName,
    Field::Slot,
    Field::Hostname,
    Field::HostIp,
    Field::ContainerId,
    Field::Network,
    Field::Ingress,
    Field::State,
    Field::Owner,
];

impl Field {
    /// The column's title, as mvconf printed it.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Field::MacvlanIp => "MACVLAN IP",
            Field::ServiceName => "SERVICE NAME",
            Field::Slot => "SLOT",
            Field::Hostname => "HOSTNAME",
            Field::HostIp => "HOST IP",
            Field::ContainerId => "CONTAINER ID",
            Field::Network => "NETWORK",
            Field::Ingress => "INGRESS",
            Field::State => "STATE",
            Field::Owner => "OWNER",
        }
    }
}

/// `macvlan_ip`, `MACVLAN_IP`, `Macvlan IP` -> `MACVLAN IP`.
pub(crate) fn field_name(s: &str) -> Option<Field> {
    let want: String = s.trim().to_ascii_uppercase().replace(['_', '-'], " ");
    FIELDS.iter().copied().find(|f| f.title() == want)
}

fn parse_fields(list: &str) -> Result<Vec<Field>, CliError> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            field_name(s).ok_or_else(|| {
                CliError::Usage(format!(
                    "unknown field {s:?}; fields are: {}",
                    FIELDS
                        .iter()
                        .map(|f| f.title())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
}

/// One row, as scripts read it with `-o json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) macvlan_ip: Option<String>,
    pub(crate) service_name: String,
    pub(crate) slot: Option<u64>,
    pub(crate) hostname: String,
    pub(crate) host_ip: String,
    pub(crate) container_id: String,
    pub(crate) network: String,
    pub(crate) ingress: bool,
    pub(crate) state: RecordState,
    pub(crate) task_id: String,
    pub(crate) node_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    /// `namespace/name` of the MacvlanBinding that owns the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<String>,
}

impl Row {
    pub(crate) fn from_record(r: &Record) -> Self {
        Self {
            macvlan_ip: r.ip.map(|ip| ip.to_string()),
            service_name: r.key.service.clone(),
            slot: match r.key.slot {
                Slot::Slot(n) => Some(n),
                Slot::Node(_) => None,
            },
            hostname: r.node.clone(),
            host_ip: r.host_ip.clone(),
            container_id: r.container.clone(),
            network: r.network.clone(),
            ingress: r.ingress,
            state: r.state,
            task_id: r.task.clone(),
            node_id: r.node_id.clone(),
            message: r.message.clone(),
            owner: None,
        }
    }

    fn cell(&self, field: Field, trunc: bool) -> String {
        let cut = |s: &str| {
            if trunc {
                s.get(..12).unwrap_or(s).to_owned()
            } else {
                s.to_owned()
            }
        };
        match field {
            Field::MacvlanIp => self.macvlan_ip.clone().unwrap_or_else(|| "-".into()),
            Field::ServiceName => self.service_name.clone(),
            Field::Slot => self.slot.map_or_else(|| "global".into(), |s| s.to_string()),
            Field::Hostname => self.hostname.clone(),
            Field::HostIp => self.host_ip.clone(),
            Field::ContainerId => {
                if self.container_id.is_empty() {
                    "-".into()
                } else {
                    cut(&self.container_id)
                }
            }
            Field::Network => self.network.clone(),
            Field::Ingress => if self.ingress { "yes" } else { "no" }.into(),
            Field::State => match &self.message {
                Some(m) if self.state != RecordState::Bound => format!("{} ({m})", self.state),
                _ => self.state.to_string(),
            },
            Field::Owner => self.owner.clone().unwrap_or_else(|| "-".into()),
        }
    }
}

/// Addresses sort as numbers, slots as numbers, the rest as text.
fn sort_key(row: &Row, field: Field) -> (u64, String) {
    let ip = |s: &Option<String>| {
        s.as_deref()
            .and_then(|v| v.parse::<Ipv4Addr>().ok())
            .map_or(u64::MAX, |a| u64::from(u32::from(a)))
    };
    match field {
        Field::MacvlanIp => (ip(&row.macvlan_ip), String::new()),
        Field::HostIp => (ip(&Some(row.host_ip.clone())), String::new()),
        Field::Slot => (row.slot.unwrap_or(u64::MAX), row.node_id.clone()),
        _ => (0, row.cell(field, false)),
    }
}

/// Renders rows as an aligned table.
pub(crate) fn table(rows: &[Row], fields: &[Field], trunc: bool) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| fields.iter().map(|f| r.cell(*f, trunc)).collect())
        .collect();
    let widths: Vec<usize> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(f.title().len())
        })
        .collect();
    let line = |vals: Vec<String>| -> String {
        let mut s = String::new();
        for (i, v) in vals.iter().enumerate() {
            if i + 1 == vals.len() {
                s.push_str(v);
            } else {
                s.push_str(&format!("{v:<w$}   ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(fields.iter().map(|f| f.title().to_owned()).collect());
    for c in cells {
        out.push_str(&line(c));
    }
    out
}

pub(crate) async fn run(
    file: &Path,
    endpoint: &EndpointArgs,
    args: &StatusArgs,
) -> Result<(), CliError> {
    let fields = match &args.fields {
        Some(list) => parse_fields(list)?,
        None => FIELDS.to_vec(),
    };
    let sort = match &args.sort {
        Some(list) => parse_fields(list)?,
        None => vec![Field::ServiceName, Field::Slot],
    };
    let (loaded, cluster) = connect(file, endpoint).await?;
    let memory = Memory::new();
    let pass = Pass {
        observe_concurrency: args.observe_concurrency,
        // `status` only reads, whatever the plan says.
        dry_run: true,
        ..Pass::new(&loaded.desired, &memory, Mode::Observe)
    };
    let passed = pass.run(&cluster, &()).await.map_err(CliError::Engine)?;
    let p = &passed.applied.plan;
    for problem in &p.problems {
        tracing::warn!("{problem}");
    }
    let owners: std::collections::HashMap<&str, &str> = passed
        .snapshot
        .services
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.owner.as_ref()?.binding.as_str())))
        .collect();
    let mut rows: Vec<Row> = p
        .records
        .iter()
        .map(|r| Row {
            owner: owners.get(r.key.service.as_str()).map(|o| (*o).to_owned()),
            ..Row::from_record(r)
        })
        .collect();
    rows.sort_by(|a, b| {
        sort.iter()
            .map(|f| sort_key(a, *f).cmp(&sort_key(b, *f)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let text = match args.output {
        Output::Table => table(&rows, &fields, !args.no_trunc),
        Output::Json => {
            serde_json::to_string_pretty(&rows).map_err(CliError::serialize("status"))? + "\n"
        }
        Output::Yaml => serde_saphyr::to_string(&rows).map_err(CliError::serialize("status"))?,
    };
    emit(&text)?;
    if args.output == Output::Table {
        let bound = p
            .records
            .iter()
            .filter(|r| r.state == RecordState::Bound)
            .count();
        eprintln!("{bound}/{} containers bound", p.records.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_match_loosely() {
        for s in ["macvlan_ip", "MACVLAN_IP", "MACVLAN IP", "Macvlan-Ip"] {
            assert_eq!(field_name(s).map(Field::title), Some("MACVLAN IP"));
        }
        assert_eq!(field_name("nope"), None);
        assert!(parse_fields("macvlan_ip,service_name").is_ok());
        assert!(parse_fields("macvlan_ip,bogus").is_err());
    }

    fn row(ip: &str, svc: &str) -> Row {
        Row {
            macvlan_ip: Some(ip.into()),
            service_name: svc.into(),
            slot: Some(1),
            hostname: "node1".into(),
            host_ip: "10.0.0.1".into(),
            container_id: "0123456789abcdef0123".into(),
            network: "mv".into(),
            ingress: false,
            state: RecordState::Bound,
            task_id: "t".into(),
            node_id: "n".into(),
            message: None,
            owner: None,
        }
    }

    #[test]
    fn tables_align_truncate_and_sort_addresses_numerically() {
        let mut rows = vec![row("192.168.8.10", "b"), row("192.168.8.9", "a")];
        rows.sort_by_key(|r| sort_key(r, Field::MacvlanIp));
        assert_eq!(rows[0].macvlan_ip.as_deref(), Some("192.168.8.9"));
        let t = table(&rows, &[Field::MacvlanIp, Field::ContainerId], true);
        assert_eq!(
            t,
            "MACVLAN IP     CONTAINER ID\n192.168.8.9    0123456789ab\n192.168.8.10   0123456789ab\n"
        );
        assert!(table(&rows, &[Field::ContainerId], false).contains("0123456789abcdef0123"));
    }
}
