"""The intermediate representation: a networkx graph of typed op nodes."""
