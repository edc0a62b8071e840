//! The WSDL 1.1 document (SOAP 1.1 binding, document/literal, wrapped) with its XML schema
//! inline in `wsdl:types`, generated from the same tables the operations use.

use crate::ops::{MAX_BATCH, MAX_FIELD_CHARS, MAX_LIMIT, OPTIONAL_FIELDS, Operation, TNS};
use crate::xml::escape_attr;

/// The WSDL, its `soap:address` at `endpoint` (checked by the settings).
pub fn wsdl(endpoint: &str) -> String {
    let mut optional_in = String::new();
    let mut optional_out = String::new();
    for (xml, _) in OPTIONAL_FIELDS {
        optional_in.push_str(&format!(
            "\n          <xs:element name=\"{xml}\" type=\"tns:FieldText\" minOccurs=\"0\"/>"
        ));
        optional_out.push_str(&format!(
            "\n          <xs:element name=\"{xml}\" type=\"xs:string\" minOccurs=\"0\"/>"
        ));
    }
    let mut messages = String::new();
    let mut port_ops = String::new();
    let mut binding_ops = String::new();
    for op in Operation::ALL {
        let name = op.name();
        messages.push_str(&format!(
            r#"
  <wsdl:message name="{name}Request">
    <wsdl:part name="parameters" element="tns:{name}"/>
  </wsdl:message>
  <wsdl:message name="{name}Response">
    <wsdl:part name="parameters" element="tns:{name}Response"/>
  </wsdl:message>"#
        ));
        let (port_extra, binding_extra) = if op == Operation::UpsertEmployees {
            (
                "\n      <wsdl:fault name=\"InvalidEmployees\" message=\"tns:InvalidEmployeesFault\"/>",
                "\n      <wsdl:fault name=\"InvalidEmployees\"><soap:fault name=\"InvalidEmployees\" use=\"literal\"/></wsdl:fault>",
            )
        } else {
            ("", "")
        };
        port_ops.push_str(&format!(
            r#"
    <wsdl:operation name="{name}">
      <wsdl:input message="tns:{name}Request"/>
      <wsdl:output message="tns:{name}Response"/>
      <wsdl:fault name="Error" message="tns:ErrorFault"/>{port_extra}
    </wsdl:operation>"#
        ));
        binding_ops.push_str(&format!(
            r#"
    <wsdl:operation name="{name}">
      <soap:operation soapAction="{action}" style="document"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
      <wsdl:fault name="Error"><soap:fault name="Error" use="literal"/></wsdl:fault>{binding_extra}
    </wsdl:operation>"#,
            action = op.action()
        ));
    }
    let endpoint = escape_attr(endpoint);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="LockgateHr" targetNamespace="{TNS}"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="{TNS}">
  <wsdl:documentation>lockgate HR web service: create, update, deactivate, delete and read employees by identifier, and list the changes to employees. SOAP 1.1, document/literal. Every failure is a SOAP fault; UpsertEmployees is all or nothing.</wsdl:documentation>
  <wsdl:types>
    <xs:schema targetNamespace="{TNS}" elementFormDefault="qualified" attributeFormDefault="unqualified">
      <xs:simpleType name="FieldText">
        <xs:restriction base="xs:string"><xs:maxLength value="{MAX_FIELD_CHARS}"/></xs:restriction>
      </xs:simpleType>
      <xs:complexType name="EmployeeInput">
        <xs:sequence>
          <xs:element name="identifier" type="tns:FieldText"/>
          <xs:element name="firstName" type="tns:FieldText"/>
          <xs:element name="lastName" type="tns:FieldText"/>{optional_in}
        </xs:sequence>
      </xs:complexType>
      <xs:simpleType name="EmployeeStatus">
        <xs:restriction base="xs:string">
          <xs:enumeration value="active"/>
          <xs:enumeration value="deactivated"/>
          <xs:enumeration value="markedDeleted"/>
        </xs:restriction>
      </xs:simpleType>
      <xs:complexType name="Employee">
        <xs:sequence>
          <xs:element name="id" type="xs:unsignedLong"/>
          <xs:element name="identifier" type="xs:string"/>
          <xs:element name="firstName" type="xs:string"/>
          <xs:element name="lastName" type="xs:string"/>{optional_out}
          <xs:element name="status" type="tns:EmployeeStatus"/>
          <xs:element name="domain" type="xs:string"/>
          <xs:element name="syncedFrom" type="xs:string" minOccurs="0"/>
          <xs:element name="version" type="xs:unsignedLong"/>
          <xs:element name="updatedAt" type="xs:dateTime"/>
        </xs:sequence>
      </xs:complexType>
      <xs:simpleType name="ChangeKind">
        <xs:restriction base="xs:string">
          <xs:enumeration value="created"/>
          <xs:enumeration value="updated"/>
          <xs:enumeration value="deactivated"/>
          <xs:enumeration value="reactivated"/>
          <xs:enumeration value="markedDeleted"/>
          <xs:enumeration value="restored"/>
          <xs:enumeration value="deleted"/>
        </xs:restriction>
      </xs:simpleType>
      <xs:complexType name="Change">
        <xs:sequence>
          <xs:element name="id" type="xs:unsignedLong"/>
          <xs:element name="identifier" type="xs:string" minOccurs="0"/>
          <xs:element name="kind" type="tns:ChangeKind"/>
          <xs:element name="at" type="xs:dateTime"/>
        </xs:sequence>
      </xs:complexType>
      <xs:simpleType name="DeleteOutcome">
        <xs:restriction base="xs:string">
          <xs:enumeration value="deleted"/>
          <xs:enumeration value="markedDeleted"/>
        </xs:restriction>
      </xs:simpleType>
      <xs:complexType name="IdentifierRequest">
        <xs:sequence>
          <xs:element name="identifier" type="tns:FieldText"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="EmployeeResponse">
        <xs:sequence>
          <xs:element name="employee" type="tns:Employee"/>
        </xs:sequence>
      </xs:complexType>

      <xs:element name="UpsertEmployees">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="domain" type="tns:FieldText" minOccurs="0"/>
            <xs:element name="employee" type="tns:EmployeeInput" minOccurs="1" maxOccurs="{MAX_BATCH}"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="UpsertEmployeesResponse">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="created" type="xs:unsignedInt"/>
            <xs:element name="updated" type="xs:unsignedInt"/>
            <xs:element name="unchanged" type="xs:unsignedInt"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="GetEmployee" type="tns:IdentifierRequest"/>
      <xs:element name="GetEmployeeResponse" type="tns:EmployeeResponse"/>
      <xs:element name="DeactivateEmployee" type="tns:IdentifierRequest"/>
      <xs:element name="DeactivateEmployeeResponse" type="tns:EmployeeResponse"/>
      <xs:element name="DeleteEmployee" type="tns:IdentifierRequest"/>
      <xs:element name="DeleteEmployeeResponse">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="outcome" type="tns:DeleteOutcome"/>
            <xs:element name="employee" type="tns:Employee" minOccurs="0"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="ListChanges">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="sinceToken" type="tns:FieldText" minOccurs="0"/>
            <xs:element name="limit" minOccurs="0">
              <xs:simpleType>
                <xs:restriction base="xs:unsignedInt">
                  <xs:minInclusive value="1"/>
                  <xs:maxInclusive value="{MAX_LIMIT}"/>
                </xs:restriction>
              </xs:simpleType>
            </xs:element>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="ListChangesResponse">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="change" type="tns:Change" minOccurs="0" maxOccurs="unbounded"/>
            <xs:element name="nextToken" type="xs:string"/>
            <xs:element name="more" type="xs:boolean"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>

      <xs:element name="Error">
        <xs:complexType>
          <xs:attribute name="kind" type="xs:string" use="required"/>
          <xs:attribute name="element" type="xs:string"/>
          <xs:attribute name="line" type="xs:unsignedInt"/>
          <xs:attribute name="column" type="xs:unsignedInt"/>
        </xs:complexType>
      </xs:element>
      <xs:element name="InvalidEmployees">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="Row" minOccurs="1" maxOccurs="unbounded">
              <xs:complexType>
                <xs:attribute name="index" type="xs:unsignedInt" use="required"/>
                <xs:attribute name="identifier" type="xs:string" use="required"/>
                <xs:attribute name="field" type="xs:string" use="required"/>
                <xs:attribute name="rule" type="xs:string" use="required"/>
              </xs:complexType>
            </xs:element>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
    </xs:schema>
  </wsdl:types>
{messages}
  <wsdl:message name="ErrorFault">
    <wsdl:part name="fault" element="tns:Error"/>
  </wsdl:message>
  <wsdl:message name="InvalidEmployeesFault">
    <wsdl:part name="fault" element="tns:InvalidEmployees"/>
  </wsdl:message>

  <wsdl:portType name="HrService">{port_ops}
  </wsdl:portType>

  <wsdl:binding name="HrServiceSoap" type="tns:HrService">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>{binding_ops}
  </wsdl:binding>

  <wsdl:service name="HrService">
    <wsdl:port name="HrServicePort" binding="tns:HrServiceSoap">
      <soap:address location="{endpoint}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Limits, parse};

    const WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
    const SOAP: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
    const XS: &str = "http://www.w3.org/2001/XMLSchema";

    #[test]
    fn the_wsdl_is_well_formed_and_names_every_operation() {
        let text = wsdl("https://lockgate.example/ws/hr");
        let doc = parse(text.as_bytes(), &Limits::REQUEST).expect("well-formed");
        assert!(doc.is(WSDL, "definitions"));
        assert_eq!(doc.attribute(None, "targetNamespace"), Some(TNS));
        let children = |e: &'static str| doc.children.iter().filter(move |c| c.is(WSDL, e));
        let port_type = children("portType").next().expect("portType");
        let binding = children("binding").next().expect("binding");
        let schema = &children("types").next().expect("types").children[0];
        assert!(schema.is(XS, "schema"));
        let elements: Vec<&str> = schema
            .children
            .iter()
            .filter(|c| c.is(XS, "element"))
            .filter_map(|c| c.attribute(None, "name"))
            .collect();
        for op in Operation::ALL {
            let name = op.name();
            assert!(
                port_type
                    .children
                    .iter()
                    .any(|o| o.attribute(None, "name") == Some(name)),
                "portType lacks {name}"
            );
            let b = binding
                .children
                .iter()
                .find(|o| o.is(WSDL, "operation") && o.attribute(None, "name") == Some(name))
                .expect("binding operation");
            let soap_op = b.children.iter().find(|c| c.is(SOAP, "operation")).unwrap();
            assert_eq!(
                soap_op.attribute(None, "soapAction"),
                Some(op.action().as_str())
            );
            assert!(elements.contains(&name), "schema lacks {name}");
            assert!(elements.contains(&format!("{name}Response").as_str()));
            assert!(
                children("message")
                    .any(|m| m.attribute(None, "name") == Some(format!("{name}Request").as_str()))
            );
        }
        for e in ["Error", "InvalidEmployees"] {
            assert!(elements.contains(&e), "{e}");
        }
        let address = children("service").next().unwrap().children[0].children[0].clone();
        assert!(address.is(SOAP, "address"));
        assert_eq!(
            address.attribute(None, "location"),
            Some("https://lockgate.example/ws/hr")
        );
    }

    #[test]
    fn every_optional_field_is_in_both_employee_types() {
        let text = wsdl("https://x/ws/hr");
        for (xml, _) in OPTIONAL_FIELDS {
            assert_eq!(
                text.matches(&format!("<xs:element name=\"{xml}\" "))
                    .count(),
                2,
                "{xml}"
            );
        }
    }
}
