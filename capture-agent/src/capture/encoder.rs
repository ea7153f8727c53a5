//! The H.264 encoders the agent knows, parsed once from an element name and then trusted:
//! how each is described in the pipeline, whether it runs on the GPU, and the unit its
//! `bitrate` property takes. Knows no GStreamer call (choosing one is `capture.rs`'s).

use std::fmt;
use std::str::FromStr;

/// One H.264 encoder element the agent can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoder {
    VaH264,
    VaapiH264,
    VtencH264Hw,
    MfH264,
    NvH264,
    QsvH264,
    OpenH264,
    X264,
}

impl Encoder {
    /// Hardware encoders first (cheapest on battery and CPU), software last. The choice is
    /// reported (`encoder` in the summary, the page and `check`), with [`Encoder::hardware`].
    pub const PREFERENCE: [Encoder; 8] = [
        Encoder::VaH264,
        Encoder::VaapiH264,
        Encoder::VtencH264Hw,
        Encoder::MfH264,
        Encoder::NvH264,
        Encoder::QsvH264,
        Encoder::OpenH264,
        Encoder::X264,
    ];

    /// The GStreamer element's factory name.
    pub fn element(self) -> &'static str {
        match self {
            Encoder::VaH264 => "vah264enc",
            Encoder::VaapiH264 => "vaapih264enc",
            Encoder::VtencH264Hw => "vtenc_h264_hw",
            Encoder::MfH264 => "mfh264enc",
            Encoder::NvH264 => "nvh264enc",
            Encoder::QsvH264 => "qsvh264enc",
            Encoder::OpenH264 => "openh264enc",
            Encoder::X264 => "x264enc",
        }
    }

    /// Whether it runs on the GPU or a media engine.
    pub fn hardware(self) -> bool {
        !matches!(self, Encoder::OpenH264 | Encoder::X264)
    }

    /// The value of its `bitrate` property for `kbps`: openh264enc counts bit/s, every
    /// other one kbit/s.
    pub(crate) fn bitrate_value(self, kbps: u32) -> u32 {
        match self {
            Encoder::OpenH264 => kbps.saturating_mul(1000),
            _ => kbps,
        }
    }

    /// The element and the caps right after it, as gst-launch syntax, named `name`.
    /// Scene-cut key frames are disabled where possible because they would restart the GOP
    /// off the fragment grid.
    pub(crate) fn description(self, name: &str, kbps: u32, gop: u32) -> String {
        let bps = u64::from(kbps) * 1000;
        let properties = match self {
            Encoder::OpenH264 => format!(
                "gop-size={gop} bitrate={bps} rate-control=bitrate complexity=low \
                 scene-change-detection=false ! video/x-h264,profile=constrained-baseline"
            ),
            Encoder::X264 => format!(
                "tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={kbps} \
                 option-string=scenecut=0 ! video/x-h264,profile=constrained-baseline"
            ),
            Encoder::VaapiH264 => format!(
                "rate-control=cbr bitrate={kbps} keyframe-period={gop} max-bframes=0 \
                 ! video/x-h264,profile=constrained-baseline"
            ),
            // Untested here (no such hardware); their profile caps are left open
            // rather than risk a negotiation failure, h264parse copes either way.
            Encoder::VaH264 => format!("rate-control=cbr bitrate={kbps} key-int-max={gop} b-frames=0"),
            Encoder::NvH264 => format!("rc-mode=cbr bitrate={kbps} gop-size={gop} bframes=0"),
            // macOS (VideoToolbox) and Windows (Media Foundation): untested here, see
            // docs/packaging.md; both take kbit/s.
            Encoder::VtencH264Hw => format!(
                "bitrate={kbps} max-keyframe-interval={gop} allow-frame-reordering=false realtime=true"
            ),
            Encoder::MfH264 => {
                format!("bitrate={kbps} gop-size={gop} bframes=0 low-latency=true")
            }
            Encoder::QsvH264 => {
                format!("rate-control=cbr bitrate={kbps} gop-size={gop} b-frames=0")
            }
        };
        format!("{} name={name} {properties}", self.element())
    }
}

impl fmt::Display for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.element())
    }
}

/// An element name the agent does not know how to drive.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not an H.264 encoder this agent knows (one of {known})", known = known())]
pub struct UnknownEncoder(pub String);

fn known() -> String {
    Encoder::PREFERENCE.map(Encoder::element).join(", ")
}

impl FromStr for Encoder {
    type Err = UnknownEncoder;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Encoder::PREFERENCE
            .into_iter()
            .find(|e| e.element() == name)
            .ok_or_else(|| UnknownEncoder(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::Encoder;

    #[test]
    fn every_encoder_parses_back_from_its_element_name() {
        for e in Encoder::PREFERENCE {
            assert_eq!(e.element().parse::<Encoder>().unwrap(), e);
        }
        assert!("h264enc".parse::<Encoder>().is_err());
    }

    #[test]
    fn only_openh264_takes_its_bitrate_in_bits_per_second() {
        assert_eq!(Encoder::OpenH264.bitrate_value(300), 300_000);
        assert_eq!(Encoder::X264.bitrate_value(300), 300);
        assert_eq!(Encoder::VaH264.bitrate_value(300), 300);
    }

    #[test]
    fn software_encoders_are_not_reported_as_hardware() {
        let hardware: Vec<_> = Encoder::PREFERENCE
            .into_iter()
            .filter(|e| e.hardware())
            .collect();
        assert_eq!(hardware.len(), 6);
        assert!(!Encoder::OpenH264.hardware() && !Encoder::X264.hardware());
    }
}
