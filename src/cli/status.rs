//! `mvconf status`: the table of containers and their macvlan addresses, as
//! Docker shows them now.

use super::endpoint::EndpointArgs;
use super::ops::connect_and_observe;
use super::{CliError, emit};
use crate::reconcile::{Memory, Mode, PlanOptions, Record, RecordState, Slot, plan};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Truncate long values such as container IDs (the default).
    #[arg(long, overrides_with = "no_trunc")]
    pub trunc: bool,
    /// Show full container and task IDs.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Fields to sort by, comma separated, e.g. 'macvlan_ip,service_name'
    /// ('macvlan_ip' = 'MACVLAN_IP' = 'MACVLAN IP').
    #[arg(long)]
    pub sort: Option<String>,
    /// Fields to show, comma separated (same names as --sort).
    #[arg(long, alias = "field")]
    pub fields: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Nodes read at once.
    #[arg(long, default_value_t = 32)]
    pub observe_concurrency: usize,
}

/// The columns, in their default order.
pub const FIELDS: &[&str] = &[
    "MACVLAN IP",
    "SERVICE NAME",
    "SLOT",
    "HOSTNAME",
    "HOST IP",
    "CONTAINER ID",
    "NETWORK",
    "INGRESS",
    "STATE",
];

/// `macvlan_ip`, `MACVLAN_IP`, `Macvlan IP` -> `MACVLAN IP`.
pub fn field_name(s: &str) -> Option<&'static str> {
    let want: String = s.trim().to_ascii_uppercase().replace(['_', '-'], " ");
    FIELDS.iter().copied().find(|f| *f == want)
}

fn parse_fields(list: &str) -> Result<Vec<&'static str>, CliError> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            field_name(s).ok_or_else(|| {
                CliError::Usage(format!(
                    "unknown field {s:?}; fields are: {}",
                    FIELDS.join(", ")
                ))
            })
        })
        .collect()
}

/// One row, as scripts read it with `-o json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    pub macvlan_ip: Option<String>,
    pub service_name: String,
    pub slot: Option<u64>,
    pub hostname: String,
    pub host_ip: String,
    pub container_id: String,
    pub network: String,
    pub ingress: bool,
    pub state: String,
    pub task_id: String,
    pub node_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Row {
    pub fn from_record(r: &Record) -> Self {
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
            state: format!("{:?}", r.state),
            task_id: r.task.clone(),
            node_id: r.node_id.clone(),
            message: r.message.clone(),
        }
    }

    fn cell(&self, field: &str, trunc: bool) -> String {
        let cut = |s: &str| {
            if trunc {
                s.get(..12).unwrap_or(s).to_owned()
            } else {
                s.to_owned()
            }
        };
        match field {
            "MACVLAN IP" => self.macvlan_ip.clone().unwrap_or_else(|| "-".into()),
            "SERVICE NAME" => self.service_name.clone(),
            "SLOT" => self.slot.map_or_else(|| "global".into(), |s| s.to_string()),
            "HOSTNAME" => self.hostname.clone(),
            "HOST IP" => self.host_ip.clone(),
            "CONTAINER ID" => {
                if self.container_id.is_empty() {
                    "-".into()
                } else {
                    cut(&self.container_id)
                }
            }
            "NETWORK" => self.network.clone(),
            "INGRESS" => if self.ingress { "yes" } else { "no" }.into(),
            "STATE" => match &self.message {
                Some(m) if self.state != "Bound" => format!("{} ({m})", self.state),
                _ => self.state.clone(),
            },
            _ => String::new(),
        }
    }
}

/// Addresses sort as numbers, slots as numbers, the rest as text.
fn sort_key(row: &Row, field: &str) -> (u64, String) {
    let ip = |s: &Option<String>| {
        s.as_deref()
            .and_then(|v| v.parse::<Ipv4Addr>().ok())
            .map_or(u64::MAX, |a| u64::from(u32::from(a)))
    };
    match field {
        "MACVLAN IP" => (ip(&row.macvlan_ip), String::new()),
        "HOST IP" => (ip(&Some(row.host_ip.clone())), String::new()),
        "SLOT" => (row.slot.unwrap_or(u64::MAX), row.node_id.clone()),
        _ => (0, row.cell(field, false)),
    }
}

/// Renders rows as an aligned table.
pub fn table(rows: &[Row], fields: &[&str], trunc: bool) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| fields.iter().map(|f| r.cell(f, trunc)).collect())
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
                .max(f.len())
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
    let mut out = line(fields.iter().map(|f| (*f).to_owned()).collect());
    for c in cells {
        out.push_str(&line(c));
    }
    out
}

pub async fn run(file: &Path, endpoint: &EndpointArgs, args: &StatusArgs) -> Result<(), CliError> {
    let fields = match &args.fields {
        Some(list) => parse_fields(list)?,
        None => FIELDS.to_vec(),
    };
    let sort = match &args.sort {
        Some(list) => parse_fields(list)?,
        None => vec!["SERVICE NAME", "SLOT"],
    };
    let (loaded, _cluster, observed) =
        connect_and_observe(file, endpoint, args.observe_concurrency).await?;
    let p = plan(
        &loaded.desired,
        &observed.snapshot,
        &Memory::new(),
        Mode::Observe,
        &PlanOptions::default(),
    );
    for problem in &p.problems {
        tracing::warn!("{problem}");
    }
    let mut rows: Vec<Row> = p.records.iter().map(Row::from_record).collect();
    rows.sort_by(|a, b| {
        sort.iter()
            .map(|f| sort_key(a, f).cmp(&sort_key(b, f)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let text = match args.output {
        Output::Table => table(&rows, &fields, !args.no_trunc),
        Output::Json => {
            serde_json::to_string_pretty(&rows).map_err(|e| CliError::Serialize {
                what: "status",
                message: e.to_string(),
            })? + "\n"
        }
        Output::Yaml => serde_saphyr::to_string(&rows).map_err(|e| CliError::Serialize {
            what: "status",
            message: e.to_string(),
        })?,
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
            assert_eq!(field_name(s), Some("MACVLAN IP"));
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
            state: "Bound".into(),
            task_id: "t".into(),
            node_id: "n".into(),
            message: None,
        }
    }

    #[test]
    fn tables_align_truncate_and_sort_addresses_numerically() {
        let mut rows = vec![row("192.168.8.10", "b"), row("192.168.8.9", "a")];
        rows.sort_by_key(|r| sort_key(r, "MACVLAN IP"));
        assert_eq!(rows[0].macvlan_ip.as_deref(), Some("192.168.8.9"));
        let t = table(&rows, &["MACVLAN IP", "CONTAINER ID"], true);
        assert_eq!(
            t,
            "MACVLAN IP     CONTAINER ID\n192.168.8.9    0123456789ab\n192.168.8.10   0123456789ab\n"
        );
        assert!(table(&rows, &["CONTAINER ID"], false).contains("0123456789abcdef0123"));
    }
}
