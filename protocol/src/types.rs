//! Numeric codes of the AlwaysOn protocol: message codes, status codes, entity and
//! characteristic types, and base type codes.
//!
//! Values follow `twDefinitions.h` of the ThingWorx Edge C SDK (see docs/protocol.md);
//! LONG (23) comes from the platform's `com.thingworx.types.BaseTypes` javadoc.

use crate::basetype::BaseType;
use std::fmt;

/// Protocol version byte written first in every message header (`TW_MSG_VERSION`).
pub const PROTOCOL_VERSION: u8 = 0x01;

/// Message code of a BIND message (`TWX_BIND`).
pub const CODE_BIND: u8 = 0x0A;
/// Message code of an UNBIND message (`TWX_UNBIND`).
pub const CODE_UNBIND: u8 = 0x0B;
/// Message code of an AUTH message (`TWX_AUTH`).
pub const CODE_AUTH: u8 = 0x14;
/// Message code of a KEEP_ALIVE message (`TWX_KEEP_ALIVE`); the C SDK defines but never sends it.
pub const CODE_KEEP_ALIVE: u8 = 0x1F;

/// Request method of a request message (codes 0x01..=0x04).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Read a property (`TWX_GET`, 0x01).
    Get,
    /// Write a property (`TWX_PUT`, 0x02).
    Put,
    /// Invoke a service or fire an event (`TWX_POST`, 0x03).
    Post,
    /// Delete (`TWX_DEL`, 0x04).
    Delete,
}

impl Method {
    /// Wire code of this method.
    pub fn code(self) -> u8 {
        match self {
            Method::Get => 0x01,
            Method::Put => 0x02,
            Method::Post => 0x03,
            Method::Delete => 0x04,
        }
    }

    /// The method for a wire code, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(Method::Get),
            0x02 => Some(Method::Put),
            0x03 => Some(Method::Post),
            0x04 => Some(Method::Delete),
            _ => None,
        }
    }
}

/// Status code of a response message; any code >= 0x40 is a response (CoAP-style x.yy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode(u8);

impl StatusCode {
    /// 2.00 Success.
    pub const SUCCESS: StatusCode = StatusCode(0x40);
    /// 4.00 Bad request.
    pub const BAD_REQUEST: StatusCode = StatusCode(0x80);
    /// 4.01 Unauthorized.
    pub const UNAUTHORIZED: StatusCode = StatusCode(0x81);
    /// 4.02 Bad option.
    pub const BAD_OPTION: StatusCode = StatusCode(0x82);
    /// 4.03 Forbidden.
    pub const FORBIDDEN: StatusCode = StatusCode(0x83);
    /// 4.04 Not found.
    pub const NOT_FOUND: StatusCode = StatusCode(0x84);
    /// 4.05 Method not allowed.
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(0x85);
    /// 4.06 Not acceptable.
    pub const NOT_ACCEPTABLE: StatusCode = StatusCode(0x86);
    /// 4.12 Precondition failed.
    pub const PRECONDITION_FAILED: StatusCode = StatusCode(0x8C);
    /// 4.13 Entity too large.
    pub const ENTITY_TOO_LARGE: StatusCode = StatusCode(0x8D);
    /// 4.15 Unsupported content format.
    pub const UNSUPPORTED_CONTENT_FORMAT: StatusCode = StatusCode(0x8F);
    /// 5.00 Internal server error.
    pub const INTERNAL_SERVER_ERROR: StatusCode = StatusCode(0xA0);
    /// 5.01 Not implemented.
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(0xA1);
    /// 5.02 Bad gateway.
    pub const BAD_GATEWAY: StatusCode = StatusCode(0xA2);
    /// 5.03 Service unavailable.
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(0xA3);
    /// 5.04 Gateway timeout.
    pub const GATEWAY_TIMEOUT: StatusCode = StatusCode(0xA4);

    /// A status for a wire code; `None` below 0x40, where codes are methods.
    pub fn from_code(code: u8) -> Option<Self> {
        (code >= 0x40).then_some(StatusCode(code))
    }

    /// Wire code of this status.
    pub fn code(self) -> u8 {
        self.0
    }

    /// True for 2.xx codes.
    pub fn is_success(self) -> bool {
        (0x40..0x60).contains(&self.0)
    }

    /// The SDK's name for the code, or "UNKNOWN".
    pub fn name(self) -> &'static str {
        match self.0 {
            0x40 => "SUCCESS",
            0x80 => "BAD_REQUEST",
            0x81 => "UNAUTHORIZED",
            0x82 => "BAD_OPTION",
            0x83 => "FORBIDDEN",
            0x84 => "NOT_FOUND",
            0x85 => "METHOD_NOT_ALLOWED",
            0x86 => "NOT_ACCEPTABLE",
            0x8C => "PRECONDITION_FAILED",
            0x8D => "ENTITY_TOO_LARGE",
            0x8F => "UNSUPPORTED_CONTENT_FORMAT",
            0xA0 => "INTERNAL_SERVER_ERROR",
            0xA1 => "NOT_IMPLEMENTED",
            0xA2 => "BAD_GATEWAY",
            0xA3 => "SERVICE_UNAVAILABLE",
            0xA4 => "GATEWAY_TIMEOUT",
            _ => "UNKNOWN",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#04x})", self.name(), self.0)
    }
}

/// Declares a `u8`-coded enum with an `Other(u8)` catch-all and a code table.
macro_rules! coded_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $c:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
            /// A code this table does not name; kept so it can be echoed back.
            Other(u8),
        }

        impl $name {
            /// Wire code.
            pub fn code(self) -> u8 {
                match self { $($name::$v => $c,)+ $name::Other(c) => c }
            }

            /// Value for a wire code; unknown codes become `Other`.
            pub fn from_code(code: u8) -> Self {
                match code { $($c => $name::$v,)+ c => $name::Other(c) }
            }
        }
    };
}

coded_enum! {
    /// Entity type byte of a request (`entityTypeEnum`); edge traffic uses `Thing`.
    EntityType {
        /// 0x00 undefined.
        Undefined = 0x00,
        /// 0x0A Thing.
        Thing = 0x0A,
        /// 0x0B Thing shape.
        ThingShapes = 0x0B,
        /// 0x0C Thing template.
        ThingTemplates = 0x0C,
        /// 0x0D Thing package.
        ThingPackages = 0x0D,
        /// 0x0E Network.
        Networks = 0x0E,
        /// 0x0F Data shape.
        DataShapes = 0x0F,
        /// 0x14 Model tag.
        ModelTags = 0x14,
        /// 0x15 Data tag.
        DataTags = 0x15,
        /// 0x1E Mashup.
        Mashups = 0x1E,
        /// 0x1F Widget.
        Widgets = 0x1F,
        /// 0x20 Style definition.
        StyleDefinitions = 0x20,
        /// 0x21 State definition.
        StateDefinitions = 0x21,
        /// 0x22 Menu.
        Menus = 0x22,
        /// 0x23 Media entity.
        MediaEntities = 0x23,
        /// 0x24 Localization table.
        LocalizationTables = 0x24,
        /// 0x27 Dashboard.
        Dashboards = 0x27,
        /// 0x28 Log.
        Logs = 0x28,
        /// 0x32 User.
        Users = 0x32,
        /// 0x33 Group.
        Groups = 0x33,
        /// 0x34 Organization.
        Organizations = 0x34,
        /// 0x35 Application key.
        ApplicationKeys = 0x35,
        /// 0x36 Directory service.
        DirectoryServices = 0x36,
        /// 0x3C Resource.
        Resource = 0x3C,
        /// 0x3D Script function library.
        ScriptFunctionLibraries = 0x3D,
        /// 0x46 Extension package.
        ExtensionPackages = 0x46,
        /// 0x50 Subsystem.
        Subsystem = 0x50,
    }
}

coded_enum! {
    /// Characteristic type byte of a request (`characteristicEnum`).
    Characteristic {
        /// 1: a property.
        Properties = 1,
        /// 2: a service.
        Services = 2,
        /// 3: an event.
        Events = 3,
    }
}

/// How a base type's value is laid out on the wire (the SDK's "type family").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// No value bytes.
    Nothing,
    /// Length-prefixed UTF-8 string.
    String,
    /// 4-byte length + raw bytes.
    Blob,
    /// 8-byte double.
    Number,
    /// 4-byte signed integer.
    Integer,
    /// 8-byte signed integer (LONG; encoding not confirmed by SDK source).
    Long,
    /// One byte, non-zero is true.
    Boolean,
    /// 8-byte signed milliseconds since the Unix epoch.
    Datetime,
    /// Three doubles: longitude, latitude, elevation.
    Location,
    /// Nested data shape + rows.
    InfoTable,
    /// Type byte + value of that type.
    Variant,
    /// Defined code without a binary encoding in the SDK (TIMESPAN, SCHEDULE).
    Unsupported,
}

/// Declares the wire type table: variant, code, name, family, matching `BaseType`.
macro_rules! wire_types {
    ($($v:ident = $c:expr, $n:expr, $f:ident, $bt:expr;)+) => {
        /// Every base type code the Edge SDK defines (plus LONG), as carried on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum WireType { $(
            #[doc = concat!("`", $n, "`")]
            $v,
        )+ }

        impl WireType {
            /// All wire types, for tests and tables.
            pub const ALL: &'static [WireType] = &[$(WireType::$v),+];

            /// Signed wire code (NOTHING is -1).
            pub fn code(self) -> i8 {
                match self { $(WireType::$v => $c,)+ }
            }

            /// Wire type for a code, if the SDK defines it.
            pub fn from_code(code: i8) -> Option<Self> {
                match code { $($c => Some(WireType::$v),)+ _ => None }
            }

            /// Upper-case name as used in REST data shapes.
            pub fn name(self) -> &'static str {
                match self { $(WireType::$v => $n,)+ }
            }

            /// How the value is laid out.
            pub fn family(self) -> Family {
                match self { $(WireType::$v => Family::$f,)+ }
            }

            /// The shared `BaseType` with this code, if `basetype.rs` names it.
            pub fn base_type(self) -> Option<BaseType> {
                match self { $(WireType::$v => $bt,)+ }
            }
        }
    };
}

wire_types! {
    Nothing = -1, "NOTHING", Nothing, Some(BaseType::Nothing);
    String = 0, "STRING", String, Some(BaseType::String);
    Number = 1, "NUMBER", Number, Some(BaseType::Number);
    Boolean = 2, "BOOLEAN", Boolean, Some(BaseType::Boolean);
    Datetime = 3, "DATETIME", Datetime, Some(BaseType::Datetime);
    Timespan = 4, "TIMESPAN", Unsupported, Some(BaseType::Timespan);
    InfoTable = 5, "INFOTABLE", InfoTable, Some(BaseType::Infotable);
    Location = 6, "LOCATION", Location, Some(BaseType::Location);
    Xml = 7, "XML", String, Some(BaseType::Xml);
    Json = 8, "JSON", String, Some(BaseType::Json);
    Query = 9, "QUERY", String, Some(BaseType::Query);
    Image = 10, "IMAGE", Blob, Some(BaseType::Image);
    Hyperlink = 11, "HYPERLINK", String, Some(BaseType::Hyperlink);
    Imagelink = 12, "IMAGELINK", String, Some(BaseType::Imagelink);
    Password = 13, "PASSWORD", String, Some(BaseType::Password);
    Html = 14, "HTML", String, Some(BaseType::Html);
    Text = 15, "TEXT", String, Some(BaseType::Text);
    Tags = 16, "TAGS", String, Some(BaseType::Tags);
    Schedule = 17, "SCHEDULE", Unsupported, None;
    Variant = 18, "VARIANT", Variant, Some(BaseType::Variant);
    Guid = 20, "GUID", String, Some(BaseType::Guid);
    Blob = 21, "BLOB", Blob, Some(BaseType::Blob);
    Integer = 22, "INTEGER", Integer, Some(BaseType::Integer);
    Long = 23, "LONG", Long, Some(BaseType::Long);
    PropertyName = 50, "PROPERTYNAME", String, Some(BaseType::Propertyname);
    ServiceName = 51, "SERVICENAME", String, Some(BaseType::Servicename);
    EventName = 52, "EVENTNAME", String, Some(BaseType::Eventname);
    ThingName = 100, "THINGNAME", String, Some(BaseType::Thingname);
    ThingShapeName = 101, "THINGSHAPENAME", String, Some(BaseType::Thingshapename);
    ThingTemplateName = 102, "THINGTEMPLATENAME", String, Some(BaseType::Thingtemplatename);
    DataShapeName = 104, "DATASHAPENAME", String, Some(BaseType::Datashapename);
    MashupName = 105, "MASHUPNAME", String, Some(BaseType::Mashupname);
    MenuName = 106, "MENUNAME", String, Some(BaseType::Menuname);
    BaseTypeName = 107, "BASETYPENAME", String, None;
    UserName = 108, "USERNAME", String, Some(BaseType::Username);
    GroupName = 109, "GROUPNAME", String, Some(BaseType::Groupname);
    CategoryName = 110, "CATEGORYNAME", String, None;
    StateDefinitionName = 111, "STATEDEFINITIONNAME", String, None;
    StyleDefinitionName = 112, "STYLEDEFINITIONNAME", String, None;
    ModelTagVocabularyName = 113, "MODELTAGVOCABULARYNAME", String, None;
    DataTagVocabularyName = 114, "DATATAGVOCABULARYNAME", String, None;
    NetworkName = 115, "NETWORKNAME", String, None;
    MediaEntityName = 116, "MEDIAENTITYNAME", String, None;
    ApplicationKeyName = 117, "APPLICATIONKEYNAME", String, None;
    LocalizationTableName = 118, "LOCALIZATIONTABLENAME", String, None;
    OrganizationName = 119, "ORGANIZATIONNAME", String, None;
    DashboardName = 120, "DASHBOARDNAME", String, None;
}

impl WireType {
    /// The wire type for a shared `BaseType` (every `BaseType` has one).
    pub fn from_base_type(bt: BaseType) -> Self {
        WireType::ALL
            .iter()
            .copied()
            .find(|w| w.base_type() == Some(bt))
            .unwrap_or(WireType::Nothing)
    }

    /// Wire type for an upper-case name, e.g. from a REST data shape.
    pub fn from_name(name: &str) -> Option<Self> {
        WireType::ALL
            .iter()
            .copied()
            .find(|w| w.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Wire code of a shared `BaseType`, as the tunnel needs it for data shapes.
pub fn base_type_code(bt: BaseType) -> i8 {
    WireType::from_base_type(bt).code()
}

/// Shared `BaseType` for a wire code; `None` for unknown codes and SDK-only types.
pub fn base_type_from_code(code: i8) -> Option<BaseType> {
    WireType::from_code(code).and_then(WireType::base_type)
}

#[cfg(test)]
mod tests;
