//! Finding the DCE controller from the local engine, as DCE's own tools
//! do: a DCE controller node is a swarm manager running the service
//! `dce_base`, whose environment carries the controller's ports; the
//! controller listens at the manager's swarm address.

use crate::engine::models::{Info, Service};
use crate::engine::{Engine, EngineError};

/// The swarm service DCE keeps on its controllers.
pub(crate) const DCE_BASE: &str = "dce_base";
/// DCE's controller port when `dce_base` does not say (the default
/// `CONTROLLER_PORT`).
const DEFAULT_CONTROLLER_PORT: u16 = 80;

/// What the local engine tells about DCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A controller, and why we believe it is one.
    Dce { url: String, why: String },
    /// No DCE here, and why not.
    NotDce { why: String },
}

/// The DCE controller that the local engine's `GET /info` and its service
/// `dce_base` (absent: `None`) name. Pure. An unusable port in `dce_base`
/// is an error naming it: guessing another port would send the login to
/// whatever listens there.
pub(crate) fn controller(info: &Info, dce_base: Option<&Service>) -> Result<Found, String> {
    let swarm = &info.swarm;
    if swarm.local_node_state != "active" {
        return Ok(Found::NotDce {
            why: format!(
                "the local engine is not in a swarm (state {:?})",
                swarm.local_node_state
            ),
        });
    }
    if !swarm.control_available {
        return Ok(Found::NotDce {
            why: "the local engine is a swarm worker, and DCE's controller runs on managers"
                .to_owned(),
        });
    }
    let Some(service) = dce_base else {
        return Ok(Found::NotDce {
            why: format!("the local swarm manager runs no service {DCE_BASE}"),
        });
    };
    let env = &service.spec.task_template.container_spec.env;
    let port = match env_value(env, "CONTROLLER_PORT") {
        None => DEFAULT_CONTROLLER_PORT,
        Some(raw) => raw.trim().parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            format!("the service {DCE_BASE} has CONTROLLER_PORT={raw:?}, which is not a port: give the controller with --dce URL")
        })?,
    };
    let addr = swarm.node_addr.trim();
    if addr.is_empty() {
        return Err(format!(
            "the local swarm manager runs {DCE_BASE} but has no swarm address: give the controller with --dce URL"
        ));
    }
    let host = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    };
    let url = if port == DEFAULT_CONTROLLER_PORT {
        format!("http://{host}")
    } else {
        format!("http://{host}:{port}")
    };
    let said = if env_value(env, "CONTROLLER_PORT").is_some() {
        format!("CONTROLLER_PORT={port}")
    } else {
        format!("no CONTROLLER_PORT, DCE's default {port}")
    };
    Ok(Found::Dce {
        url,
        why: format!(
            "the local engine is a manager of a swarm running {DCE_BASE} ({said}), at swarm address {addr}"
        ),
    })
}

/// `NAME`'s value in `NAME=value` entries; the last one wins, as in Docker.
fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// Asks the local engine: its swarm role, then its service `dce_base`.
pub(crate) async fn ask(local: &Engine) -> Result<Result<Found, String>, EngineError> {
    let info = local.info().await?;
    // Only a manager lists services.
    let service = match info.swarm.control_available {
        true => local.service(DCE_BASE).await?,
        false => None,
    };
    Ok(controller(&info, service.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::models::{SwarmInfo, TaskContainerSpec, TaskTemplate};

    fn info(state: &str, manager: bool, addr: &str) -> Info {
        Info {
            swarm: SwarmInfo {
                local_node_state: state.into(),
                control_available: manager,
                node_addr: addr.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn dce_base(env: &[&str]) -> Service {
        let mut s = Service::default();
        s.spec.name = DCE_BASE.into();
        s.spec.task_template = TaskTemplate {
            container_spec: TaskContainerSpec {
                env: env.iter().map(|e| (*e).to_owned()).collect(),
            },
        };
        s
    }

    fn url(found: Result<Found, String>) -> String {
        match found {
            Ok(Found::Dce { url, .. }) => url,
            other => panic!("expected a controller, got {other:?}"),
        }
    }

    #[test]
    fn the_controller_is_at_the_managers_swarm_address_on_controller_port() {
        let s = dce_base(&[
            "SWARM_PORT=2375",
            "CONTROLLER_PORT=8080",
            "CONTROLLER_SSL_PORT=443",
        ]);
        let i = info("active", true, "10.0.0.11");
        assert_eq!(url(controller(&i, Some(&s))), "http://10.0.0.11:8080");
        // DCE's default port, said or not, gives the URL `mvconf login IP` saves.
        let s = dce_base(&["CONTROLLER_PORT=80"]);
        assert_eq!(url(controller(&i, Some(&s))), "http://10.0.0.11");
        let s = dce_base(&[]);
        let found = controller(&i, Some(&s));
        assert!(matches!(&found, Ok(Found::Dce { why, .. }) if why.contains("DCE's default 80")));
        let v6 = info("active", true, "fd00::11");
        assert_eq!(url(controller(&v6, Some(&s))), "http://[fd00::11]");
    }

    #[test]
    fn no_dce_without_a_managing_swarm_node_running_dce_base() {
        let s = dce_base(&["CONTROLLER_PORT=80"]);
        for (i, said) in [
            (info("inactive", false, ""), "not in a swarm"),
            (info("active", false, "10.0.0.12"), "worker"),
        ] {
            assert!(
                matches!(controller(&i, Some(&s)), Ok(Found::NotDce { why }) if why.contains(said))
            );
        }
        let i = info("active", true, "10.0.0.11");
        assert!(
            matches!(controller(&i, None), Ok(Found::NotDce { why }) if why.contains("no service dce_base"))
        );
    }

    #[test]
    fn an_unusable_controller_port_is_refused_by_name() {
        let i = info("active", true, "10.0.0.11");
        for bad in [
            "CONTROLLER_PORT=http",
            "CONTROLLER_PORT=0",
            "CONTROLLER_PORT=70000",
        ] {
            let err = controller(&i, Some(&dce_base(&[bad]))).unwrap_err();
            assert!(
                err.contains("CONTROLLER_PORT") && err.contains("--dce"),
                "{err}"
            );
        }
        // The last of repeated entries wins, as in Docker; a longer name is another variable.
        let s = dce_base(&[
            "CONTROLLER_PORT=x",
            "CONTROLLER_PORTS=1",
            "CONTROLLER_PORT=81",
        ]);
        assert_eq!(url(controller(&i, Some(&s))), "http://10.0.0.11:81");
        let err = controller(&info("active", true, ""), Some(&dce_base(&[]))).unwrap_err();
        assert!(err.contains("no swarm address"), "{err}");
    }
}
