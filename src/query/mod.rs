pub mod table;
pub mod waterfall;
