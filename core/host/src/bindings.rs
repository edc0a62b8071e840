//! Host bindings generated from the WIT packages in `wit/`: one `bindgen!`
//! over the host-side world `lockgate:connector/host`, which imports every
//! capability and exports every plugin interface. A plugin implements one
//! connector world (a subset); the host loads the export interfaces it has
//! one by one through their `GuestIndices`.
#![allow(missing_debug_implementations, missing_docs)]

wasmtime::component::bindgen!({
    world: "lockgate:connector/host",
    path: ["../../wit/host", "../../wit/connector"],
    imports: { default: async },
    exports: { default: async },
    additional_derives: [PartialEq],
});
