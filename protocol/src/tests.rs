//! Tests of the codec as a whole: golden bytes (layouts from public sources) and properties.

mod golden;
mod properties;
