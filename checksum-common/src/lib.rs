//! Shared by the kernel programs (checksum-ebpf), the `checksum-audit` binary and the tests:
//! the event and counter layouts that cross the kernel/user boundary, and the checksum arithmetic.
#![no_std]

/// Defines a `#[repr(u8)]` enum whose values cross the kernel/user boundary as plain bytes, from
/// one list of `Variant = value => "name"`, with what every such enum has: `COUNT`, `ALL` (in
/// declaration order), `from_u8` (the decoder: `None` for any other byte) and `name` (the
/// bounded label that text, JSON and metrics show).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            pub const COUNT: usize = [$(Self::$variant),+].len();
            pub const ALL: [Self; Self::COUNT] = [$(Self::$variant),+];

            pub const fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $( $value => Some(Self::$variant), )+
                    _ => None,
                }
            }

            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $label, )+
                }
            }
        }
    };
}

pub mod counters;
pub mod csum;
pub mod drop;
pub mod encap;
pub mod event;
pub mod reference;
pub mod signature;
pub mod source;
pub mod track;

pub use counters::Counters;
pub use event::{ChecksumEvent, Hook, Kind, Layer, Status};
pub use source::{SourceKey, SourceState};
