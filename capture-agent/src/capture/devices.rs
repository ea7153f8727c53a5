//! Which cameras and microphones there are, and the pipeline source each one stands for.
//!
//! The candidate picks by id among the devices listed here; an id that is not in the
//! current list is refused, so the page can never inject anything into a pipeline
//! description. Test sources list two of each, so that the choice is exercised by the tests.

use super::{quote, Source, FAKE_SOURCES};
use anyhow::{anyhow, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Stable within a run: what the page sends back.
    pub id: String,
    /// What the candidate reads ("Integrated Camera").
    pub label: String,
    /// The source's gst-launch description; never sent to the page.
    #[serde(skip)]
    pub launch: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Devices {
    pub cameras: Vec<Device>,
    pub microphones: Vec<Device>,
}

/// The camera and microphone chosen, as pipeline sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub camera: Device,
    pub microphone: Device,
}

fn test_device(id: &str, label: &str, launch: &str) -> Device {
    Device {
        id: id.into(),
        label: label.into(),
        launch: launch.into(),
    }
}

/// Lists what `source` offers. For real devices: GStreamer's device monitor, fake
/// fallbacks left out.
pub fn list(source: &Source) -> Result<Devices> {
    gst::init()?;
    Ok(match source {
        Source::Test | Source::TestBusy => {
            let first_camera = if *source == Source::TestBusy {
                test_device(
                    "test:zone-plate",
                    "Mire de test animée",
                    "videotestsrc is-live=true pattern=zone-plate kx2=20 ky2=20 kt=1",
                )
            } else {
                test_device(
                    "test:ball",
                    "Mire de test (balle)",
                    "videotestsrc is-live=true pattern=ball",
                )
            };
            Devices {
                cameras: vec![
                    first_camera,
                    test_device(
                        "test:smpte",
                        "Mire de test (barres)",
                        "videotestsrc is-live=true pattern=smpte",
                    ),
                ],
                microphones: vec![
                    test_device(
                        "test:ticks",
                        "Son de test (tops)",
                        "audiotestsrc is-live=true wave=ticks",
                    ),
                    test_device(
                        "test:sine",
                        "Son de test (sinusoïde)",
                        "audiotestsrc is-live=true wave=sine volume=0.4",
                    ),
                ],
            }
        }
        Source::File(path) => {
            let launch = format!(
                "filesrc location={} ! decodebin name=dec dec.",
                quote(&path.to_string_lossy())
            );
            Devices {
                cameras: vec![test_device("file", "Fichier", &launch)],
                microphones: vec![test_device("file", "Fichier", "dec.")],
            }
        }
        Source::Device => Devices {
            cameras: monitor("Video/Source")?,
            microphones: monitor("Audio/Source")?,
        },
    })
}

/// The first of each, or the ones named; a named id must be listed.
pub fn choose(
    devices: &Devices,
    camera: Option<&str>,
    microphone: Option<&str>,
) -> Result<Chosen, Missing> {
    let pick = |list: &[Device], id: Option<&str>, missing: Missing| -> Result<Device, Missing> {
        match id {
            None => list.first().cloned().ok_or(missing),
            Some(id) => list
                .iter()
                .find(|d| d.id == id)
                .cloned()
                .ok_or(Missing::Unknown),
        }
    };
    Ok(Chosen {
        camera: pick(&devices.cameras, camera, Missing::Camera)?,
        microphone: pick(&devices.microphones, microphone, Missing::Microphone)?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("no camera found")]
    Camera,
    #[error("no microphone found")]
    Microphone,
    #[error("no such device")]
    Unknown,
}

fn monitor(class: &str) -> Result<Vec<Device>> {
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some(class), None);
    monitor
        .start()
        .map_err(|e| anyhow!("device monitor for {class}: {e}"))?;
    let devices = monitor.devices();
    monitor.stop();
    let mut out = Vec::new();
    for (n, d) in devices.into_iter().enumerate() {
        let Some(launch) = launch_of(&d) else {
            continue;
        };
        out.push(Device {
            id: format!(
                "{}:{n}",
                class.split('/').next().unwrap_or("dev").to_lowercase()
            ),
            label: d.display_name().to_string(),
            launch,
        });
    }
    Ok(out)
}

/// Properties through which sources name their device, across platforms (v4l2src and
/// pulsesrc `device`, pipewiresrc `target-object`/`path`, mfvideosrc `device-path`,
/// avfvideosrc `device-index`, wasapisrc `device`).
const DEVICE_PROPERTIES: &[&str] = &[
    "device",
    "device-path",
    "path",
    "target-object",
    "device-index",
    "device-name",
];

/// The device as a gst-launch source: its element with the properties that differ from a
/// fresh element of the same kind (what `gst-device-monitor-1.0` prints).
fn launch_of(device: &gst::Device) -> Option<String> {
    let element = device.create_element(None).ok()?;
    let factory = element.factory()?;
    if FAKE_SOURCES.contains(&factory.name().as_str()) {
        return None;
    }
    let fresh = factory.create().build().ok()?;
    let mut launch = factory.name().to_string();
    for name in DEVICE_PROPERTIES {
        let Some(spec) = element.find_property(name) else {
            continue;
        };
        if !spec.flags().contains(gst::glib::ParamFlags::READWRITE) {
            continue;
        }
        let (value, default) = (element.property_value(name), fresh.property_value(name));
        let (Ok(v), Ok(d)) = (value.serialize(), default.serialize()) else {
            continue;
        };
        if v != d && !v.is_empty() {
            launch.push_str(&format!(" {name}={}", quote(&v)));
        }
    }
    Some(launch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sources_offer_a_choice_and_unknown_ids_are_refused() {
        let d = list(&Source::Test).unwrap();
        assert_eq!((d.cameras.len(), d.microphones.len()), (2, 2));
        let first = choose(&d, None, None).unwrap();
        assert_eq!(
            (first.camera.id.as_str(), first.microphone.id.as_str()),
            ("test:ball", "test:ticks")
        );
        let picked = choose(&d, Some("test:smpte"), Some("test:sine")).unwrap();
        assert!(picked.camera.launch.contains("pattern=smpte"));
        // Only listed ids: nothing else reaches a pipeline description.
        assert_eq!(
            choose(&d, Some("videotestsrc ! filesink location=/tmp/x"), None),
            Err(Missing::Unknown)
        );
        assert_eq!(
            choose(&Devices::default(), None, None),
            Err(Missing::Camera)
        );
        let no_mic = Devices {
            cameras: d.cameras.clone(),
            microphones: vec![],
        };
        assert_eq!(choose(&no_mic, None, None), Err(Missing::Microphone));
        // What the page sees carries no pipeline text.
        let json = serde_json::to_string(&d).unwrap();
        assert!(!json.contains("videotestsrc"), "{json}");
    }
}
