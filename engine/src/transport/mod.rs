//! The ways a call reaches hark, above admission: each turns its own
//! signalling into a call for admission and a leg for the call's driver.
//!
//! # Layout
//! - `audiosocket`: AudioSocket listeners (TCP), one accept task each.
//! - `sip`: SIP mode, hark as a SIP endpoint (`sip-bridge`); RTP legs.
//! - `stasis`: Stasis mode, calls driven through ARI (`ari-client`), with
//!   AudioSocket or RTP external media.
//! - `rtp_ports`: the UDP port range RTP legs bind in.
//!
//! The legs themselves (what the driver reads and writes) are in
//! `driver::leg`, below admission.

pub(crate) mod audiosocket;
pub(crate) mod rtp_ports;
pub(crate) mod sip;
pub(crate) mod stasis;
