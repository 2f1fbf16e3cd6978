{#- True when a score model has nothing to score this build: no record of its relation is new
    or changed (`changes`, the generated <relation>__changes model) and its scorer did not
    change (score_plan). The model then selects no rows from its own last table instead of
    running its SQL, which DuckDB would plan in full even for no input (0.1-1.2 s a model).
    False while dbt parses, on --full-refresh, and when the model has no table yet. -#}
{% macro nothing_to_score(changes, model_name, role) -%}
    {%- if not execute or mlsm.full_refresh() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- if adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set todo -%}
        select
            (select count(*) from {{ ref(changes) }} where change <> 'gone')
            + (select count(*) from {{ ref('score_plan') }}
               where rescore_all and model_name = '{{ model_name }}' and role = '{{ role }}')
    {%- endset -%}
    {{ return(run_query(todo).columns[0].values()[0] == 0) }}
{%- endmacro %}
