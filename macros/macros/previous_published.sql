{#- The table the last build published under `name` (schema `published`), or none: on the
    first build, on `mlsm build --full-refresh` (mlsm.full_refresh()), or when its columns
    are not `columns` (a model gained reason codes): then everything is scored afresh. Looked
    up when the model runs, not when dbt parses the project. -#}
{% macro previous_published(name, columns) -%}
    {%- if not execute or mlsm.full_refresh() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set found = adapter.get_relation(database=target.database, schema='published', identifier=name) -%}
    {%- if found is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set have = adapter.get_columns_in_relation(found) | map(attribute='name') | map('lower') | list -%}
    {%- if have != columns | map('lower') | list -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(found) }}
{%- endmacro %}
