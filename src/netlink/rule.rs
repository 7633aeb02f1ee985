//! Policy routing rules (RTM_NEWRULE / RTM_DELRULE), for the fwmark
//! redirect method.
