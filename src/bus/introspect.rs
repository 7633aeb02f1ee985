//! Introspection XML for every object, including the signals and
//! properties the reference leaves out of its own XML.

const HEADER: &str = "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n";

const STANDARD: &str = r#"  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get"><arg type="s" name="interface_name" direction="in"/><arg type="s" name="property_name" direction="in"/><arg type="v" name="value" direction="out"/></method>
    <method name="GetAll"><arg type="s" name="interface_name" direction="in"/><arg type="a{sv}" name="properties" direction="out"/></method>
    <method name="Set"><arg type="s" name="interface_name" direction="in"/><arg type="s" name="property_name" direction="in"/><arg type="v" name="value" direction="in"/></method>
    <signal name="PropertiesChanged"><arg type="s" name="interface_name"/><arg type="a{sv}" name="changed_properties"/><arg type="as" name="invalidated_properties"/></signal>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect"><arg type="s" name="xml_data" direction="out"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId"><arg type="s" name="machine_uuid" direction="out"/></method>
  </interface>
"#;

const SIGNALS: &str = r#"    <signal name="Log"><arg type="u" name="group"/><arg type="u" name="level"/><arg type="s" name="message"/></signal>
    <signal name="NetworkChange"><arg type="u" name="type"/><arg type="s" name="device"/><arg type="a{ss}" name="details"/></signal>
"#;

const MANAGER: &str = r#"    <method name="CreateVirtualInterface"><arg type="s" name="device_name" direction="in"/><arg type="o" name="device_path" direction="out"/></method>
    <method name="FetchInterfaceList"><arg type="ao" name="device_paths" direction="out"/></method>
    <method name="ProtectSocket"><arg type="s" name="remote" direction="in"/><arg type="b" name="ipv6" direction="in"/><arg type="o" name="device_path" direction="in"/><arg type="b" name="succeeded" direction="out"/></method>
    <method name="DcoAvailable"><arg type="b" name="available" direction="out"/></method>
    <method name="Cleanup"/>
    <method name="NotificationSubscribe"><arg type="u" name="filter" direction="in"/></method>
    <method name="NotificationUnsubscribe"><arg type="s" name="subscriber" direction="in"/></method>
    <method name="NotificationSubscriberList"><arg type="a(su)" name="subscriptions" direction="out"/></method>
    <property type="as" name="global_dns_servers" access="read"/>
    <property type="as" name="global_dns_search" access="read"/>
    <property type="u" name="log_level" access="readwrite"/>
    <property type="s" name="config_file" access="read"/>
    <property type="s" name="version" access="read"/>
    <property type="s" name="dco_family" access="read"/>
"#;

const DEVICE: &str = r#"    <method name="AddIPAddress"><arg type="s" name="ip_address" direction="in"/><arg type="u" name="prefix_size" direction="in"/><arg type="s" name="gateway" direction="in"/><arg type="b" name="ipv6" direction="in"/></method>
    <method name="SetRemoteAddress"><arg type="s" name="ip_address" direction="in"/><arg type="b" name="ipv6" direction="in"/></method>
    <method name="AddNetworks"><arg type="a(suibb)" name="networks" direction="in"/></method>
    <method name="ClearConfig"/>
    <method name="AddDNS"><arg type="as" name="server_list" direction="in"/></method>
    <method name="AddDNSSearch"><arg type="as" name="domains" direction="in"/></method>
    <method name="SetDNSSEC"><arg type="s" name="mode" direction="in"/></method>
    <method name="SetDNSTransport"><arg type="s" name="mode" direction="in"/></method>
    <method name="EnableDCO"><arg type="s" name="dev_name" direction="in"/><arg type="o" name="dco_device_path" direction="out"/></method>
    <method name="Establish"><arg type="h" name="tun_fd" direction="out"/></method>
    <method name="Disable"/>
    <method name="Destroy"/>
    <property type="u" name="log_level" access="readwrite"/>
    <property type="u" name="owner" access="read"/>
    <property type="au" name="acl" access="read"/>
    <property type="b" name="active" access="read"/>
    <property type="b" name="modified" access="read"/>
    <property type="as" name="dns_name_servers" access="read"/>
    <property type="as" name="dns_search_domains" access="read"/>
    <property type="s" name="dnssec_mode" access="read"/>
    <property type="s" name="dns_transport" access="read"/>
    <property type="s" name="dns_scope" access="readwrite"/>
    <property type="s" name="device_name" access="read"/>
    <property type="u" name="layer" access="readwrite"/>
    <property type="q" name="mtu" access="readwrite"/>
    <property type="b" name="reroute_ipv4" access="readwrite"/>
    <property type="b" name="reroute_ipv6" access="readwrite"/>
    <property type="q" name="txqueuelen" access="readwrite"/>
"#;

const DCO: &str = r#"    <method name="NewPeer"><arg type="u" name="peer_id" direction="in"/><arg type="s" name="sa" direction="in"/><arg type="u" name="salen" direction="in"/><arg type="s" name="vpn4" direction="in"/><arg type="s" name="vpn6" direction="in"/></method>
    <method name="GetPipeFD"><arg type="h" name="pipe_fd" direction="out"/></method>
    <method name="NewKey"><arg type="u" name="key_slot" direction="in"/><arg type="s" name="key_config" direction="in"/></method>
    <method name="SwapKeys"><arg type="u" name="peer_id" direction="in"/></method>
    <method name="SetPeer"><arg type="u" name="peer_id" direction="in"/><arg type="u" name="keepalive_interval" direction="in"/><arg type="u" name="keepalive_timeout" direction="in"/></method>
    <method name="GetPeer"><arg type="u" name="peer_id" direction="in"/></method>
"#;

pub enum Node<'a> {
    /// A path on the way to the manager (`/`, `/net`, ...): children only.
    Intermediate {
        child: &'a str,
    },
    Manager {
        children: &'a [String],
    },
    Device {
        has_dco: bool,
    },
    Dco,
}

pub fn xml(node: Node) -> String {
    let mut s = String::with_capacity(4096);
    s.push_str(HEADER);
    s.push_str("<node>\n");
    let iface = |s: &mut String, body: &str| {
        s.push_str(STANDARD);
        s.push_str("  <interface name=\"net.openvpn.v3.netcfg\">\n");
        s.push_str(body);
        s.push_str(SIGNALS);
        s.push_str("  </interface>\n");
    };
    match node {
        Node::Intermediate { child } => {
            s.push_str(STANDARD);
            s.push_str(&format!("  <node name=\"{child}\"/>\n"));
        }
        Node::Manager { children } => {
            iface(&mut s, MANAGER);
            for c in children {
                s.push_str(&format!("  <node name=\"{c}\"/>\n"));
            }
        }
        Node::Device { has_dco } => {
            iface(&mut s, DEVICE);
            if has_dco {
                s.push_str("  <node name=\"dco\"/>\n");
            }
        }
        Node::Dco => iface(&mut s, DCO),
    }
    s.push_str("</node>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_manager_lists_netcfg_exactly_as_the_client_matches_it() {
        let x = xml(Node::Intermediate { child: "netcfg" });
        assert!(x.contains("<node name=\"netcfg\"/>"));
        // The client retries when the XML is 218 characters or shorter.
        assert!(x.len() > 218);
    }

    #[test]
    fn device_xml_declares_signals_and_fd_reply() {
        let x = xml(Node::Device { has_dco: true });
        assert!(x.contains("<signal name=\"NetworkChange\">"));
        assert!(x.contains("<method name=\"Establish\"><arg type=\"h\""));
        assert!(x.contains("<node name=\"dco\"/>"));
        assert_eq!(x.matches("<property").count(), 16);
        // Both methods the real client (27.1) calls besides the documented ones.
        assert!(x.contains("<method name=\"ClearConfig\"/>"));
        assert!(xml(Node::Dco).contains("<method name=\"GetPeer\"><arg type=\"u\" name=\"peer_id\""));
    }
}
