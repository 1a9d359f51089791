//! The keys each section accepts, read from the structs' own serde code so that error messages
//! ("expected one of: ...") and the tests on `config/configuration.toml` cannot drift from the
//! structs.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;

use crate::{
    AgentKata, AgentSection, Component, Config, FactorySection, HypervisorSection, ProxySection,
    Qemu, RuntimeSection, ShimSection,
};

/// Sections that hold values (not only sub-sections), in the order of the default file.
#[cfg(test)]
pub(crate) const VALUE_SECTIONS: &[&str] = &[
    "hypervisor.qemu",
    "proxy.kata",
    "shim.kata",
    "agent.kata",
    "runtime",
    "factory",
];

/// The keys of dotted `section` ("" for the top level), `None` for a section the structs do not
/// have.
pub(crate) fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "" => fields_of::<Config>(),
        "hypervisor" => fields_of::<HypervisorSection>(),
        "hypervisor.qemu" => fields_of::<Qemu>(),
        "proxy" => fields_of::<ProxySection>(),
        "shim" => fields_of::<ShimSection>(),
        "proxy.kata" | "shim.kata" => fields_of::<Component>(),
        "agent" => fields_of::<AgentSection>(),
        "agent.kata" => fields_of::<AgentKata>(),
        "runtime" => fields_of::<RuntimeSection>(),
        "factory" => fields_of::<FactorySection>(),
        _ => return None,
    })
}

/// The field names serde_derive generated for `T` (the list `deny_unknown_fields` checks
/// against; skipped fields are not in it). serde hands them to `Deserializer::deserialize_struct`,
/// so a deserializer that only records that argument reads them without any input.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldProbe) {
        Err(Probe::Fields(fields)) => fields,
        _ => &[],
    }
}

struct FieldProbe;

#[derive(Debug)]
enum Probe {
    Fields(&'static [&'static str]),
    NotAStruct,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for Probe {}

impl de::Error for Probe {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Probe::NotAStruct
    }
}

impl<'de> Deserializer<'de> for FieldProbe {
    type Error = Probe;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probe> {
        Err(Probe::NotAStruct)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probe> {
        Err(Probe::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
