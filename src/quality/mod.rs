//! Voice quality: the reports SBCs send about the media of the calls we carry.
//!
//! - [`vqreport`]: RFC 6035 `application/vq-rtcpxr` bodies (SIP PUBLISH, `Event: vq-rtcpxr`),
//!   read tolerantly into a report and summarised into the sample the quality sinks take. Pure:
//!   no I/O, no clock.

pub mod vqreport;
