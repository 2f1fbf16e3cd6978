{#- The model node a relation was built from (None at parse time, when the graph is empty):
    a generic test receives the relation, and this finds the file behind it. -#}
{% macro node_of_relation(relation) -%}
    {%- set ns = namespace(node=none) -%}
    {%- if execute -%}
        {%- for n in graph.nodes.values()
            if n.resource_type == 'model'
            and (n.alias or n.name) | lower == relation.identifier | lower
            and n.schema | lower == relation.schema | lower -%}
            {%- set ns.node = n -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(ns.node) }}
{%- endmacro %}
