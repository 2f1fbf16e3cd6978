{#- Fails on rows whose value is outside [min_value, max_value] or NaN. NULLs are left to
    not_null, as in dbt_utils.accepted_range. -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none) %}
{%- if min_value is none and max_value is none -%}
    {{ exceptions.raise_compiler_error("accepted_range on column '" ~ column_name ~ "' needs min_value or max_value") }}
{%- endif -%}
with

checked as (

    select {{ column_name }} as value
    from {{ model }}
    where {{ column_name }} is not null

)

select value
from checked
where value = cast('NaN' as {{ mlsm.type_double() }})
    {%- if min_value is not none %}
    or value < {{ min_value }}
    {%- endif %}
    {%- if max_value is not none %}
    or value > {{ max_value }}
    {%- endif %}
{% endtest %}
