"""Seeing the wire: DMSC signalling as scapy layers, captures and simulated pcaps.

- :mod:`dmsc.wire.scapy_layers`: the ``DMSC`` layer (UDP 6464) and frame builders;
- :mod:`dmsc.wire.capture`: read a capture file or sniff live, print each message decoded
  (``dmsc capture``);
- :mod:`dmsc.wire.pcap_from_sim`: record a simulation's datagrams as a pcapng file.

Scapy is a tool here, never on a node's per-packet path; these modules import it, this package
does not, so ``import dmsc.wire`` stays cheap.
"""
